import * as core from '@actions/core'
import type { Config } from './config.js'
import type { RunContext } from './context.js'
import { readCommitMessage } from './context.js'
import { buildAndPush, imageLabels } from './image.js'
import { ensureRelease, type ReleasesApi } from './release.js'
import { runRemote, type HistoryEntry, type RemoteEvent, type RemoteRequest } from './remote.js'
import type { Runner } from './runner.js'
import type { RemoteShell, SshConfig } from './ssh.js'
import { isPrerelease, planVersion, toImageTag } from './version.js'

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
  /** the remote timeline: pull, started, healthy, switched, drained, stopped */
  events: RemoteEvent[]
  /** the server's last deploy history entries */
  history?: HistoryEntry[]
}

export interface Deps {
  runner: Runner
  releases: (token: string) => ReleasesApi
  connect: (ssh: SshConfig) => Promise<RemoteShell>
}

/**
 * The whole run: connect (first, so a wrong key or host key fails before anything is pushed) →
 * version → build, tag, push → release → blue-green switch on the server.
 */
export async function deploy(
  config: Config,
  ctx: RunContext,
  deps: Deps,
  outcome: Outcome
): Promise<void> {
  const shell = await core.group(
    `Connect to ${config.ssh.username}@${config.ssh.host}:${config.ssh.port}`,
    () => deps.connect(config.ssh)
  )
  try {
    if (config.rollback)
      await switchOnServer(
        shell,
        config,
        ctx,
        outcome,
        rollbackRequest(config.image, config.rollback)
      )
    else await buildReleaseAndSwitch(config, ctx, deps, outcome, shell)
  } finally {
    shell.dispose()
  }
}

async function buildReleaseAndSwitch(
  config: Config,
  ctx: RunContext,
  deps: Deps,
  outcome: Outcome,
  shell: RemoteShell
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

  // a deploy without a version is labelled on the server by its sha- tag, so it can be rolled back to
  await switchOnServer(shell, config, ctx, outcome, {
    action: 'deploy',
    image: refs[0]!,
    version: plan.version ?? plan.tags[0]
  })
}

/** Rollback builds, pushes and releases nothing: the server switches to a version it knows. */
function rollbackRequest(
  image: string,
  target: string
): Pick<RemoteRequest, 'action' | 'image' | 'target'> {
  core.info(`Rollback to ${target}: nothing is built, pushed or released.`)
  // for an explicit version the registry tag is the fallback when the server has no record of it
  return {
    action: 'rollback',
    target,
    image: target === 'previous' ? `${image}:latest` : `${image}:${toImageTag(target)}`
  }
}

async function switchOnServer(
  shell: RemoteShell,
  config: Config,
  ctx: RunContext,
  outcome: Outcome,
  req: Pick<RemoteRequest, 'action' | 'image' | 'version' | 'target'>
): Promise<void> {
  let open = false
  const log = {
    line: (text: string) => core.info(text),
    warning: (text: string) => core.warning(`${config.ssh.host}: ${text}`),
    phase: (name: string) => {
      if (open) core.endGroup()
      core.startGroup(`${config.ssh.host}: ${name}`)
      open = true
    }
  }
  try {
    const r = await runRemote(shell, config, { ...req, actor: ctx.actor, runUrl: ctx.runUrl }, log)
    outcome.deployed = r.deployed
    outcome.color = r.color
    outcome.previousColor = r.previousColor
    outcome.events = r.events
    outcome.history = r.history
    outcome.image = r.image ?? outcome.image
    if (req.action === 'rollback') outcome.version = r.version
  } catch (e) {
    outcome.events = (e as { events?: RemoteEvent[] }).events ?? []
    outcome.history = (e as { history?: HistoryEntry[] }).history ?? []
    throw e
  } finally {
    if (open) core.endGroup()
  }
  core.info(
    `${config.app.name} ${outcome.version ?? outcome.image} serves from ${outcome.color}${outcome.previousColor ? ` (was ${outcome.previousColor})` : ''}`
  )
}
