// The runner's own steps around the servers': build, push, tag a pushed digest, draft and publish
// the release, and move latest once a version serves.
import * as core from '@actions/core'
import { buildImage, imageLabels, pushImage } from './image.js'
import * as jobLog from './job-log.js'
import type { LocalPlan } from './plan.js'
import type { Registry } from './registry.js'
import { draftRelease, type Release, type ReleasesApi } from './release.js'
import { inPhase, runnerEvent, type Run } from './run.js'
import { isPrerelease } from './version.js'

/** build: false: the version's tag names the pushed digest (from then on, as a build's would). */
export async function tagStep(
  { config, outcome }: Run,
  registry: Registry,
  tag: string,
  digest: string
): Promise<void> {
  try {
    await registry.retag(digest, tag)
  } catch (e) {
    outcome.failedPhase ??= 'tagging the version'
    throw new Error(
      `Cannot tag ${config.image}@${digest} as ${tag}: ${(e as Error).message}. Nothing was deployed.`
    )
  }
  runnerEvent(outcome, 'pushed')
  outcome.tags = [`${config.image}:${tag}`]
  core.info(`${config.image}:${tag} now names ${digest}`)
}

/** The image building; it is pushed only once the servers are reached and the version checked. */
export interface Build {
  ref: string
  /** settles when `docker build` ends */
  readonly done: Promise<void>
  /** the build is no longer wanted: stop it (saying why) and wait for its end */
  stop(why: string): Promise<void>
}

export function startBuild({ config, ctx, deps, outcome }: Run, { plan }: LocalPlan): Build {
  const ref = `${config.image}:${plan.tag}`
  const stopper = new AbortController()
  let ended = false
  runnerEvent(outcome, 'build')
  jobLog.startGroup(`Build ${ref}`)
  const done = buildImage(
    deps.runner,
    config,
    {
      refs: [ref],
      labels: imageLabels({ version: plan.version, sha: ctx.sha, sourceUrl: ctx.repositoryUrl })
    },
    ctx.workspace,
    stopper.signal
  ).finally(() => {
    ended = true
    jobLog.endGroup()
  })
  done.catch(() => undefined) // its error is read where the image is needed
  return {
    ref,
    done,
    async stop(why) {
      if (!ended) core.info(`Stopping the build of ${ref}: ${why}`)
      stopper.abort()
      await done.catch(() => undefined)
    }
  }
}

export async function notBuiltAgain(
  { outcome }: Run,
  ref: string,
  notes: (() => void)[]
): Promise<void> {
  for (const note of notes) note()
  core.info(`${ref} holds this commit already (an earlier run pushed it): not built again`)
  outcome.tags = [ref]
}

/** Once the image is built (its output done, the plan's messages printed): push it. */
export async function pushStep(
  { config, ctx, deps, outcome }: Run,
  build: Build,
  notes: (() => void)[],
  claimed: Promise<unknown> = Promise.resolve()
): Promise<void> {
  try {
    await inPhase(outcome, 'build', () => build.done)
    runnerEvent(outcome, 'built')
  } finally {
    for (const note of notes) note()
  }
  await claimed
  const pushed = await jobLog.group(`Push ${build.ref}`, () =>
    inPhase(outcome, 'push', () => pushImage(deps.runner, config, [build.ref], ctx.workspace))
  )
  runnerEvent(outcome, 'pushed')
  outcome.tags = [...pushed.refs]
  outcome.digest = pushed.digest
  core.info(`Pushed ${build.ref}${pushed.digest ? ` (${pushed.digest})` : ''}`)
}

/** The release, a draft until its version serves; made while the image builds. */
export async function draftStep(
  { ctx, outcome }: Run,
  releases: ReleasesApi,
  version: string
): Promise<{ release: Release; created: boolean }> {
  runnerEvent(outcome, 'release')
  const r = await inPhase(outcome, 'drafting the release', () =>
    draftRelease(releases, { tag: version, sha: ctx.sha, prerelease: isPrerelease(version) })
  )
  runnerEvent(outcome, 'drafted')
  outcome.releaseUrl = r.release.html_url
  outcome.releaseDraft = r.release.draft === true
  core.info(
    `${r.created ? 'Created draft' : r.release.draft ? 'Found draft' : 'Found'} release ${version}: ${r.release.html_url}`
  )
  return r
}

/** Publish the draft once its version serves. */
export async function publishStep(
  { outcome }: Run,
  releases: ReleasesApi | undefined,
  release: Release | undefined
): Promise<void> {
  if (!release?.draft || !releases || !outcome.deployed) return
  const published = await inPhase(outcome, 'publishing the release', () =>
    releases.publish(release.id)
  )
  runnerEvent(outcome, 'published')
  outcome.releaseUrl = published.html_url
  outcome.releaseDraft = false
  core.info(`Published release ${published.tag_name}: ${published.html_url}`)
}

/**
 * After the switch, `latest` names what serves: the version deployed, or the one a rollback put
 * back. A pre-release never moves it. On a rollback a failure is a warning: the rollback itself
 * succeeded and must not be repeated.
 */
export async function moveLatest(
  { config, outcome }: Run,
  registry: Registry,
  action: 'deploy' | 'rollback'
): Promise<void> {
  const ref = outcome.image
  if (!outcome.deployed || !ref) return
  // a rollback to a deploy without a version answers its sha- tag, which is no pre-release
  if (
    outcome.version &&
    !/^sha-[0-9a-f]+$/.test(outcome.version) &&
    isPrerelease(outcome.version)
  ) {
    core.info(`${outcome.version} is a pre-release: latest stays where it is`)
    return
  }
  const from = ref.slice(config.image.length + 1)
  try {
    await registry.retag(from, 'latest')
  } catch (e) {
    const message = `${outcome.version ?? ref} serves, but ${config.image}:latest could not be moved to it: ${(e as Error).message}`
    if (action === 'rollback') {
      jobLog.warning(
        `${message}. Until it is, a host that pulls latest gets the version rolled back from.`,
        { title: 'latest not moved' }
      )
      return
    }
    throw new Error(`${message}. Re-run the workflow: the next run finishes it.`)
  }
  outcome.tags = [...outcome.tags, `${config.image}:latest`]
  core.info(`${config.image}:latest now names ${ref}`)
}
