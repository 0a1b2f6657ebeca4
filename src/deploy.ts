// The flows, each a list of named steps: a deploy that builds, a deploy of an image pushed
// before, and a rollback. The steps live in plan.ts (the version), runner-steps.ts (build, push,
// release, latest) and servers.ts (the server script on one server or several).
import * as core from '@actions/core'
import type { Config } from './config.js'
import type { RunContext } from './context.js'
import * as jobLog from './job-log.js'
import { checkPlan, findPushed, readPlan, type LocalPlan, type Planned } from './plan.js'
import type { RemoteRequest } from './remote/request.js'
import { both, inPhase, type Deps, type Outcome, type Run } from './run.js'
import {
  draftStep,
  moveLatest,
  notBuiltAgain,
  publishStep,
  pushStep,
  startBuild,
  tagStep,
  type Build
} from './runner-steps.js'
import {
  connectAll,
  disconnect,
  overlapsBuild,
  startEarly,
  startFleetEarly,
  switchOnServers,
  type Target
} from './servers.js'
import { toImageTag } from './version.js'

export type { Deps, Outcome, TimelineEvent } from './run.js'

/**
 * A run: a rollback, or a deploy of the version the commit names, built here or pushed before.
 */
export async function deploy(
  config: Config,
  ctx: RunContext,
  deps: Deps,
  outcome: Outcome
): Promise<void> {
  const run: Run = { config, ctx, deps, outcome }
  if (config.rollback) return rollback(run, config.rollback)
  const local = await inPhase(outcome, 'reading the version', () => readPlan(run))
  if (config.prebuilt) return deployPushed(run, local)
  return deployBuilt(run, local)
}

/**
 * A rollback builds, pushes and releases nothing: every server switches to a version it knows
 * (the one before, or the one named), then `latest` follows it.
 */
async function rollback(run: Run, to: string): Promise<void> {
  const { config, deps, outcome } = run
  core.info(`Rollback to ${to}: nothing is built, pushed or released.`)
  const target = await inPhase(outcome, 'connecting over SSH', () => connectAll(run))
  try {
    await switchOnServers(run, target, rollbackRequest(config.image, to))
    await inPhase(outcome, 'moving latest', () =>
      moveLatest(run, deps.registry(config), 'rollback')
    )
  } finally {
    disconnect(target)
  }
}

/**
 * A deploy that builds: the image builds while every server is connected and the version is
 * checked with GitHub and the registry → the server script gets ready while the build finishes,
 * the draft release claims the version, the image is pushed (only once every server is reached,
 * so a wrong key or host key fails before anything is pushed) → the script pulls, starts, checks
 * and switches → `latest` and the release follow the version that serves.
 */
async function deployBuilt(run: Run, local: LocalPlan): Promise<void> {
  const build = startBuild(run, local)
  const [target, planned] = await both(
    inPhase(run.outcome, 'connecting over SSH', () => connectAll(run)),
    inPhase(run.outcome, 'checking the version with GitHub and the registry', () =>
      checkPlan(run, local)
    ),
    async ([connected]) => {
      await build.stop('the run cannot go on (below)')
      if (connected.status === 'fulfilled') disconnect(connected.value)
    }
  )
  try {
    await buildReleaseAndSwitch(run, target, planned, build)
  } finally {
    disconnect(target)
  }
}

/**
 * build: false: the image was pushed before (another job built it). Its digest is read from the
 * registry while the servers are connected; the version's tag is put on that digest, the release
 * drafted, and every server pulls and runs the image by digest, so each environment deployed from
 * it runs the identical image.
 */
async function deployPushed(run: Run, local: LocalPlan): Promise<void> {
  const { config, outcome } = run
  const [target, found] = await both(
    inPhase(outcome, 'connecting over SSH', () => connectAll(run)),
    inPhase(outcome, 'reading the pushed image from the registry', () => findPushed(run, local)),
    ([connected]) => {
      if (connected.status === 'fulfilled') disconnect(connected.value)
    }
  )
  try {
    const { plan, digest, tagged, registry, releases, notes } = found
    for (const note of notes) note()
    const ref = `${config.image}@${digest}`
    Object.assign(outcome, { version: plan.version, image: ref, digest })
    const given = `${config.image}${config.prebuilt}`
    core.info(
      `Deploying ${given} (pushed before, not built here)${given === ref ? '' : `: ${ref}`}`
    )
    // the version's tag goes on the digest only once the draft claimed the version for this commit
    const drafting =
      plan.version && releases ? draftStep(run, releases, plan.version) : Promise.resolve(undefined)
    const [, drafted] = await both(
      drafting.then(() =>
        tagged || !plan.version ? undefined : tagStep(run, registry, plan.tag, digest)
      ),
      drafting
    )
    if (tagged && plan.version) outcome.tags = [`${config.image}:${plan.tag}`]
    await switchOnServers(run, target, {
      action: 'deploy',
      image: ref,
      version: plan.version ?? plan.tag
    })
    await inPhase(outcome, 'moving latest', () => moveLatest(run, registry, 'deploy'))
    await publishStep(run, releases, drafted?.release)
  } finally {
    disconnect(target)
  }
}

async function buildReleaseAndSwitch(
  run: Run,
  target: Target,
  { plan, built, registry, releases, notes }: Planned,
  begun: Build
): Promise<void> {
  const { config, outcome } = run
  outcome.version = plan.version
  const ref = `${config.image}:${plan.tag}`
  outcome.image = ref
  let build: Build | undefined = begun
  if (built === 'here' || ref !== begun.ref) {
    // the registry holds this commit's image, or the version becomes a sha- tag: stop that build
    await begun.stop(
      built === 'here'
        ? "the registry holds this commit's image already"
        : `the version is released already, so the image is tagged ${plan.tag}`
    )
    build = built === 'here' ? undefined : startBuild(run, { plan })
  }
  // a deploy without a version is labelled on the server by its sha- tag, so it can be rolled back to
  const req = { action: 'deploy' as const, image: ref, version: plan.version ?? plan.tag }
  // the servers get ready (lock, checks, which color serves) while the image builds
  const early = !overlapsBuild(config)
    ? undefined
    : config.fleet.several
      ? startFleetEarly(run, target, req)
      : startEarly(run, target.servers[0]!.shell, req)
  // the draft claims the version while the image builds; the push waits for it, so two commits
  // that name one version cannot both push its tag (the second one's draft is refused)
  const drafting =
    plan.version && releases ? draftStep(run, releases, plan.version) : Promise.resolve(undefined)
  const [, drafted] = await both(
    build ? pushStep(run, build, notes, drafting) : notBuiltAgain(run, ref, notes),
    drafting,
    async ([pushed, draft]) => {
      await early?.abort()
      // a draft this run made for an image that was never pushed would claim the version
      if (pushed.status === 'rejected' && draft.status === 'fulfilled' && draft.value?.created)
        await releases!.remove(draft.value.release.id).then(
          () => {
            outcome.releaseUrl = undefined
            outcome.releaseDraft = undefined
          },
          (e: Error) =>
            jobLog.warning(`The draft release could not be deleted: ${e.message}`, {
              title: 'Draft release left'
            })
        )
    }
  )
  early?.go()
  await switchOnServers(run, target, req, early)
  await inPhase(outcome, 'moving latest', () => moveLatest(run, registry, 'deploy'))
  await publishStep(run, releases, drafted?.release)
}

/** What a rollback asks of the servers: the version, and where its image is if they lack it. */
function rollbackRequest(
  image: string,
  target: string
): Pick<RemoteRequest, 'action' | 'image' | 'target'> {
  // for an explicit version the registry tag is the fallback when the server has no record of it
  return {
    action: 'rollback',
    target,
    image: target === 'previous' ? `${image}:latest` : `${image}:${toImageTag(target)}`
  }
}
