import * as core from '@actions/core'
import type { Config } from './config.js'
import type { RunContext } from './context.js'
import { readCommitMessage } from './context.js'
import { buildAndPush, imageLabels } from './image.js'
import { ensureRelease, type ReleasesApi } from './release.js'
import type { Runner } from './runner.js'
import { isPrerelease, planVersion } from './version.js'

/** What a run produced so far; main turns it into outputs even when a later step fails. */
export interface Outcome {
  version?: string
  image?: string
  tags: string[]
  digest?: string
  releaseUrl?: string
  color?: string
  previousColor?: string
  deployed: boolean
}

export interface Deps {
  runner: Runner
  releases: (token: string) => ReleasesApi
}

/** The whole run: version → build, tag, push → release. */
export async function deploy(
  config: Config,
  ctx: RunContext,
  deps: Deps,
  outcome: Outcome
): Promise<void> {
  const message = config.version ? undefined : await readCommitMessage(ctx, deps.runner)
  const plan = planVersion({
    explicit: config.version,
    message,
    pattern: config.versionPattern,
    sha: ctx.sha
  })
  outcome.version = plan.version
  if (plan.version)
    core.info(
      `Version ${plan.version} (from ${plan.source === 'input' ? "the 'version' input" : 'the commit message'})`
    )
  else
    core.notice(
      `No version found in the commit message, so the image is tagged ${plan.tags[0]} and latest and no release is made. To release, put a version such as v1.2.3 in the commit message or set the 'version' input.`
    )

  const refs = plan.tags.map((t) => `${config.image}:${t}`)
  const pushed = await core.group(`Build and push ${refs.join(', ')}`, () =>
    buildAndPush(
      deps.runner,
      config,
      {
        refs,
        labels: imageLabels({ version: plan.version, sha: ctx.sha, sourceUrl: ctx.repositoryUrl })
      },
      ctx.workspace
    )
  )
  outcome.tags = pushed.refs
  outcome.digest = pushed.digest
  outcome.image = refs[0]
  core.info(`Pushed ${refs.join(', ')}${pushed.digest ? ` (${pushed.digest})` : ''}`)

  if (plan.version && config.createRelease) {
    if (!config.githubToken)
      throw new Error(
        "Input 'github-token' is empty: pass ${{ github.token }} or set create-release: false."
      )
    const version = plan.version
    const { release, created } = await core.group(`Release ${version}`, () =>
      ensureRelease(deps.releases(config.githubToken!), {
        tag: version,
        sha: ctx.sha,
        prerelease: isPrerelease(version)
      })
    )
    outcome.releaseUrl = release.html_url
    core.info(`${created ? 'Created' : 'Found existing'} release ${version}: ${release.html_url}`)
  }
}
