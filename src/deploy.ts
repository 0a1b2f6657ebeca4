import * as core from '@actions/core'
import * as jobLog from './job-log.js'
import { pullCredentialNote, type Config } from './config.js'
import type { RunContext } from './context.js'
import { readCommit } from './context.js'
import { FleetError, runFleet, serverName, type Server, type ServerOutcome } from './fleet.js'
import { foreignText } from './foreign.js'
import { ServerLog } from './server-log.js'
import { buildImage, imageLabels, pushImage } from './image.js'
import type { Registry } from './registry.js'
import { draftRelease, releasedElsewhere, type Release, type ReleasesApi } from './release.js'
import type { RunnerStep, TimelineStep } from './protocol.js'
import {
  RemoteError,
  runRemote,
  startRemote,
  type HistoryEntry,
  type RemoteEvent,
  type RemoteRequest,
  type RemoteSession,
  type Serving
} from './remote.js'
import type { Runner } from './runner.js'
import type { RemoteShell, SshConfig } from './ssh.js'
import { isPrerelease, planVersion, shaTag, toImageTag, type VersionPlan } from './version.js'

/** What a run produced so far; main turns it into outputs even when a later step fails. */
export interface Outcome {
  version?: string
  image?: string
  tags: string[]
  digest?: string
  releaseUrl?: string
  /** the release is still a draft: it is published only once its version serves */
  releaseDraft?: boolean
  color?: string
  previousColor?: string
  deployed: boolean
  /** the timeline: the runner's steps (build, pushed, drafted) and the server's, by time */
  events: TimelineEvent[]
  /** the server's last deploy history entries */
  history?: HistoryEntry[]
  /** a run over several servers: how each one ended */
  servers?: ServerOutcome[]
  /** promote: false: the new version runs on every server, ready to be switched to */
  prepared?: boolean
  /** the preview routes of the new color (nginx-preview-file) */
  previews?: string[]
  /** connections still open on the old color when the drain ended (drain-timeout) */
  openConnections?: number
  /** why the run failed */
  error?: string
  /** the step the run failed in: one of the runner's, or the server's phase */
  failedPhase?: string
  /** what serves on the server as its script ended (one server over SSH) */
  serving?: Serving
}

export interface TimelineEvent {
  name: TimelineStep
  ms: number
}

export interface Deps {
  runner: Runner
  releases: (token: string) => ReleasesApi
  registry: (config: Config) => Registry
  connect: (ssh: SshConfig) => Promise<RemoteShell>
}

const REVISION = 'org.opencontainers.image.revision'

/**
 * The whole run: the version from the commit → the image builds while every server is connected
 * and the version is checked with GitHub and the registry → the server script starts and gets
 * ready while the build finishes, the image is pushed (only once every server is reached, so a
 * wrong key or host key fails before anything is pushed) and the draft release is made → the
 * script pulls, starts, checks and switches → `latest` and the release follow the version that
 * serves.
 */
export async function deploy(
  config: Config,
  ctx: RunContext,
  deps: Deps,
  outcome: Outcome
): Promise<void> {
  if (config.rollback) {
    const target = await inPhase(outcome, 'connecting over SSH', () => connectAll(config, deps))
    try {
      await switchOnServers(
        target,
        config,
        ctx,
        outcome,
        rollbackRequest(config.image, config.rollback)
      )
      await inPhase(outcome, 'moving latest', () =>
        moveLatest(deps.registry(config), config, outcome, 'rollback')
      )
    } finally {
      disconnect(target)
    }
    return
  }
  const local = await inPhase(outcome, 'reading the version', () => readPlan(config, ctx, deps))
  if (config.prebuilt) return deployPushed(config, ctx, deps, outcome, local)
  const build = startBuild(config, ctx, deps, local, outcome)
  const [connected, checked] = await Promise.allSettled([
    inPhase(outcome, 'connecting over SSH', () => connectAll(config, deps)),
    inPhase(outcome, 'checking the version with GitHub and the registry', () =>
      checkPlan(config, ctx, deps, local)
    )
  ])
  if (connected.status === 'rejected' || checked.status === 'rejected') {
    await build.stop('the run cannot go on (below)')
    if (connected.status === 'fulfilled') disconnect(connected.value)
    throw (
      connected.status === 'rejected' ? connected.reason : (checked as PromiseRejectedResult).reason
    ) as Error
  }
  try {
    await buildReleaseAndSwitch(config, ctx, deps, outcome, connected.value, checked.value, build)
  } finally {
    disconnect(connected.value)
  }
}

function disconnect(target: Target): void {
  for (const s of [...target.servers, ...(target.lb ? [target.lb] : [])]) s.shell.dispose()
}

/** The servers of the run, connected: one (a plain run), or several and a load balancer. */
interface Target {
  servers: Server[]
  lb?: Server
}

/** Connect to every server at once; if one fails, the run stops before anything is pushed. */
async function connectAll(config: Config, deps: Deps): Promise<Target> {
  const all = [...config.hosts, ...(config.lb ? [config.lb] : [])]
  const connected = await Promise.allSettled(all.map((ssh) => deps.connect(ssh)))
  const failed = connected.flatMap((r, i) =>
    r.status === 'rejected' ? [{ name: serverName(all[i]!), error: r.reason as Error }] : []
  )
  if (failed.length > 0) {
    for (const r of connected) if (r.status === 'fulfilled') r.value.dispose()
    if (all.length === 1) throw failed[0]!.error
    throw new Error(
      `Cannot connect to every server, so nothing was pushed or changed. ${failed.map((f) => `${f.name}: ${f.error.message}`).join(' ')}`
    )
  }
  const servers = connected.map((r, i) => ({
    ssh: all[i]!,
    shell: (r as PromiseFulfilledResult<RemoteShell>).value
  }))
  core.info(
    `Connected to ${all.length === 1 ? `${config.ssh.username}@${config.ssh.host}:${config.ssh.port}` : all.map(serverName).join(', ')}`
  )
  core.info(pullCredentialNote(config))
  return config.lb
    ? { servers: servers.slice(0, -1), lb: servers[servers.length - 1] }
    : { servers }
}

/** The version the commit asks for, before GitHub and the registry are asked. */
interface LocalPlan {
  plan: VersionPlan
}

/** The version this run deploys, and whether its image was built before. */
interface Planned {
  plan: VersionPlan
  built: 'here' | 'elsewhere' | 'no'
  registry: Registry
  releases?: ReleasesApi
  /** its messages, printed once the build's output is done */
  notes: (() => void)[]
}

async function readPlan(config: Config, ctx: RunContext, deps: Deps): Promise<LocalPlan> {
  const commit = config.version ? {} : await readCommit(ctx, deps.runner)
  const plan = planVersion({
    explicit: config.version,
    message: commit.message,
    author: commit.author,
    pattern: config.versionPattern,
    sha: ctx.sha
  })
  if (plan.version && config.createRelease && !config.githubToken)
    throw new Error(
      "Input 'github-token' is empty: pass ${{ github.token }} or set create-release: false."
    )
  return { plan }
}

async function checkPlan(
  config: Config,
  ctx: RunContext,
  deps: Deps,
  { plan: asked }: LocalPlan
): Promise<Planned> {
  let plan = asked
  const notes: (() => void)[] = []
  const registry = deps.registry(config)
  const releases =
    plan.version && config.createRelease ? deps.releases(config.githubToken!) : undefined
  const built = plan.version
    ? await builtBefore(plan, ctx.sha, registry, config, releases, notes)
    : 'no'
  if (built === 'elsewhere') plan = { source: 'none', tag: shaTag(ctx.sha) }
  const version = plan.version
  if (version)
    notes.push(() =>
      core.info(
        `Version ${version} (from ${plan.source === 'input' ? "the 'version' input" : 'the commit message'})`
      )
    )
  else if (plan.notReleased) {
    const why = plan.notReleased
    notes.push(() =>
      jobLog.notice(`${why} The image is tagged ${plan.tag}; no release is made.`, {
        title: 'No release'
      })
    )
  } else if (built !== 'elsewhere')
    notes.push(() =>
      jobLog.notice(
        `No version found in the commit message, so the image is tagged ${plan.tag} and no release is made. To release, put a version such as v1.2.3 in the commit message or set the 'version' input.`,
        { title: 'No version in the commit message' }
      )
    )
  return { plan, built, registry, releases, notes }
}

/**
 * build: false: the image was pushed before (another job built it). Its digest is read from the
 * registry while the servers are connected; the version's tag is put on that digest, the release
 * drafted, and every server pulls and runs the image by digest, so each environment deployed from
 * it runs the identical image.
 */
async function deployPushed(
  config: Config,
  ctx: RunContext,
  deps: Deps,
  outcome: Outcome,
  local: LocalPlan
): Promise<void> {
  const [connected, found] = await Promise.allSettled([
    inPhase(outcome, 'connecting over SSH', () => connectAll(config, deps)),
    inPhase(outcome, 'reading the pushed image from the registry', () =>
      findPushed(config, ctx, deps, local)
    )
  ])
  if (connected.status === 'rejected' || found.status === 'rejected') {
    if (connected.status === 'fulfilled') disconnect(connected.value)
    throw (
      connected.status === 'rejected' ? connected.reason : (found as PromiseRejectedResult).reason
    ) as Error
  }
  const target = connected.value
  try {
    const { plan, digest, tagged, registry, releases, notes } = found.value
    for (const note of notes) note()
    const ref = `${config.image}@${digest}`
    Object.assign(outcome, { version: plan.version, image: ref, digest })
    const given = `${config.image}${config.prebuilt}`
    core.info(
      `Deploying ${given} (pushed before, not built here)${given === ref ? '' : `: ${ref}`}`
    )
    // the version's tag goes on the digest only once the draft claimed the version for this commit
    const drafting =
      plan.version && releases
        ? draftStep(releases, plan.version, ctx.sha, outcome)
        : Promise.resolve(undefined)
    const [tag, drafted] = await Promise.allSettled([
      drafting.then(() =>
        tagged || !plan.version ? undefined : tagStep(registry, config, plan.tag, digest, outcome)
      ),
      drafting
    ])
    if (tag.status === 'rejected') throw tag.reason as Error
    if (drafted.status === 'rejected') throw drafted.reason as Error
    if (tagged && plan.version) outcome.tags = [`${config.image}:${plan.tag}`]
    await switchOnServers(target, config, ctx, outcome, {
      action: 'deploy',
      image: ref,
      version: plan.version ?? plan.tag
    })
    await inPhase(outcome, 'moving latest', () => moveLatest(registry, config, outcome, 'deploy'))
    await publishStep(releases, drafted.value?.release, outcome)
  } finally {
    disconnect(target)
  }
}

/**
 * The pushed image's digest, and the version it deploys as: a version tagged on another digest,
 * or released for another commit, deploys as the commit's sha- name (a notice says where it is).
 */
async function findPushed(
  config: Config,
  ctx: RunContext,
  deps: Deps,
  { plan: asked }: LocalPlan
): Promise<Planned & { digest: string; tagged: boolean }> {
  const registry = deps.registry(config)
  const given = `${config.image}${config.prebuilt}`
  const read = (reference: string) =>
    registry.digest(reference).catch((e: Error) => {
      const name = `${config.image}${reference.startsWith('sha256:') ? '@' : ':'}${reference}`
      throw new Error(`Cannot read ${name} from ${config.registry}: ${e.message}`)
    })
  const releases =
    asked.version && config.createRelease ? deps.releases(config.githubToken!) : undefined
  const [digest, onGithub, versionDigest] = await Promise.all([
    read(config.prebuilt!.replace(/^:/, '').replace(/^.*@/, '')),
    asked.version && releases ? releasedElsewhere(releases, asked.version, ctx.sha) : undefined,
    asked.version ? read(asked.tag) : undefined
  ])
  if (!digest)
    throw new Error(
      `${given} is not in ${config.registry}. With build: false the action deploys an image pushed before: push it first (e.g. docker/build-push-action with push: true) and pass its digest, as image: ${config.image}@\${{ steps.<id>.outputs.digest }}.`
    )
  const notes: (() => void)[] = []
  let plan = asked
  const elsewhere =
    onGithub ??
    (versionDigest && versionDigest !== digest
      ? `${config.image}:${asked.tag} names another image (${versionDigest})`
      : undefined)
  if (elsewhere) {
    plan = { source: 'none', tag: shaTag(ctx.sha) }
    notes.push(() =>
      jobLog.notice(
        `${asked.version} is released already: ${elsewhere}. A version is released once, so this deploy is named ${plan.tag}. To release it, name a new version.`,
        { title: `${asked.version} is released already` }
      )
    )
  } else if (plan.version)
    notes.push(() =>
      core.info(
        `Version ${plan.version} (from ${plan.source === 'input' ? "the 'version' input" : 'the commit message'})`
      )
    )
  return {
    plan,
    built: 'no',
    registry,
    releases: plan.version ? releases : undefined,
    notes,
    digest,
    // the version's tag names this digest already (a re-run, or a deploy to the next environment)
    tagged: versionDigest === digest
  }
}

/** build: false: the version's tag names the pushed digest (from then on, as a build's would). */
async function tagStep(
  registry: Registry,
  config: Config,
  tag: string,
  digest: string,
  outcome: Outcome
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
interface Build {
  ref: string
  /** settles when `docker build` ends */
  readonly done: Promise<void>
  /** the build is no longer wanted: stop it (saying why) and wait for its end */
  stop(why: string): Promise<void>
}

function startBuild(
  config: Config,
  ctx: RunContext,
  deps: Deps,
  { plan }: LocalPlan,
  outcome: Outcome
): Build {
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

async function buildReleaseAndSwitch(
  config: Config,
  ctx: RunContext,
  deps: Deps,
  outcome: Outcome,
  target: Target,
  { plan, built, registry, releases, notes }: Planned,
  begun: Build
): Promise<void> {
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
    build = built === 'here' ? undefined : startBuild(config, ctx, deps, { plan }, outcome)
  }
  // a deploy without a version is labelled on the server by its sha- tag, so it can be rolled back to
  const req = { action: 'deploy' as const, image: ref, version: plan.version ?? plan.tag }
  // the server gets ready (lock, checks, which color serves) while the image builds
  const early = overlapsBuild(config)
    ? startEarly(target.servers[0]!.shell, config, ctx, req, outcome)
    : undefined
  // the draft claims the version while the image builds; the push waits for it, so two commits
  // that name one version cannot both push its tag (the second one's draft is refused)
  const drafting =
    plan.version && releases
      ? draftStep(releases, plan.version, ctx.sha, outcome)
      : Promise.resolve(undefined)
  const [pushed, drafted] = await Promise.allSettled([
    build
      ? pushStep(config, ctx, deps, build, notes, outcome, drafting)
      : notBuiltAgain(ref, notes, outcome),
    drafting
  ])
  if (pushed.status === 'rejected' || drafted.status === 'rejected') {
    await early?.abort()
    // a draft this run made for an image that was never pushed would claim the version
    if (pushed.status === 'rejected' && drafted.status === 'fulfilled' && drafted.value?.created)
      await releases!.remove(drafted.value.release.id).then(
        () => {
          outcome.releaseUrl = undefined
          outcome.releaseDraft = undefined
        },
        (e: Error) =>
          jobLog.warning(`The draft release could not be deleted: ${e.message}`, {
            title: 'Draft release left'
          })
      )
    throw (
      pushed.status === 'rejected' ? pushed.reason : (drafted as PromiseRejectedResult).reason
    ) as Error
  }
  const release = drafted.value?.release
  if (early) early.go()

  await switchOnServers(target, config, ctx, outcome, req, early)
  await inPhase(outcome, 'moving latest', () => moveLatest(registry, config, outcome, 'deploy'))
  await publishStep(releases, release, outcome)
}

async function notBuiltAgain(ref: string, notes: (() => void)[], outcome: Outcome): Promise<void> {
  for (const note of notes) note()
  core.info(`${ref} holds this commit already (an earlier run pushed it): not built again`)
  outcome.tags = [ref]
}

/** Once the image is built (its output done, the plan's messages printed): push it. */
async function pushStep(
  config: Config,
  ctx: RunContext,
  deps: Deps,
  build: Build,
  notes: (() => void)[],
  outcome: Outcome,
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
async function draftStep(
  releases: ReleasesApi,
  version: string,
  sha: string,
  outcome: Outcome
): Promise<{ release: Release; created: boolean }> {
  runnerEvent(outcome, 'release')
  const r = await inPhase(outcome, 'drafting the release', () =>
    draftRelease(releases, { tag: version, sha, prerelease: isPrerelease(version) })
  )
  runnerEvent(outcome, 'drafted')
  outcome.releaseUrl = r.release.html_url
  outcome.releaseDraft = r.release.draft === true
  core.info(
    `${r.created ? 'Created draft' : r.release.draft ? 'Found draft' : 'Found'} release ${version}: ${r.release.html_url}`
  )
  return r
}

/** Run a step of the runner's; if it fails, the summary names it as where the run failed. */
async function inPhase<T>(outcome: Outcome, phase: string, step: () => Promise<T>): Promise<T> {
  try {
    return await step()
  } catch (e) {
    outcome.failedPhase ??= phase
    throw e
  }
}

/** Publish the draft once its version serves. */
async function publishStep(
  releases: ReleasesApi | undefined,
  release: Release | undefined,
  outcome: Outcome
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

/** A step of the runner's own, in the timeline beside the server's. */
function runnerEvent(outcome: Outcome, name: RunnerStep): void {
  outcome.events = [...outcome.events, { name, ms: Date.now() }]
}

/** The timeline so far with the server's events, in the order they happened. */
function withEvents(outcome: Outcome, events: readonly RemoteEvent[]): TimelineEvent[] {
  return [...outcome.events, ...events].sort((a, b) => a.ms - b.ms)
}

/**
 * Was this version built before? 'here': the registry holds it for this very commit (a re-run);
 * 'elsewhere': a tag, release or draft of it exists for another commit, or the registry holds
 * it from another commit — it is never released or pushed again (a notice says where it is);
 * 'no': it is new.
 */
async function builtBefore(
  plan: VersionPlan,
  sha: string,
  registry: Registry,
  config: Config,
  releases: ReleasesApi | undefined,
  notes: (() => void)[]
): Promise<'here' | 'elsewhere' | 'no'> {
  const notice = (where: string) =>
    notes.push(() =>
      jobLog.notice(
        `${plan.version} is released already: ${where}. A version is released once, so this commit deploys as ${shaTag(sha)}. To release it, name a new version.`,
        { title: `${plan.version} is released already` }
      )
    )
  // GitHub and the registry are asked at once
  const [onGithub, labels] = await Promise.all([
    releases ? releasedElsewhere(releases, plan.version!, sha) : undefined,
    registry.labels(plan.tag).catch((e: Error) => {
      throw new Error(
        `Cannot check whether ${config.image}:${plan.tag} is in the registry already (a version is never pushed over): ${e.message}`
      )
    })
  ])
  if (onGithub) {
    notice(onGithub)
    return 'elsewhere'
  }
  if (!labels) return 'no'
  if (labels[REVISION] === sha) return 'here'
  notice(
    `${config.image}:${plan.tag} is in the registry, built from ${labels[REVISION] ? `commit ${labels[REVISION].slice(0, 7)}` : 'an unknown commit'}`
  )
  return 'elsewhere'
}

/**
 * After the switch, `latest` names what serves: the version deployed, or the one a rollback put
 * back. A pre-release never moves it. On a rollback a failure is a warning: the rollback itself
 * succeeded and must not be repeated.
 */
async function moveLatest(
  registry: Registry,
  config: Config,
  outcome: Outcome,
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

async function switchOnServers(
  target: Target,
  config: Config,
  ctx: RunContext,
  outcome: Outcome,
  req: Pick<RemoteRequest, 'action' | 'image' | 'version' | 'target'>,
  early?: EarlyStart
): Promise<void> {
  if (!config.fleet.several)
    return switchOnServer(target.servers[0]!.shell, config, ctx, outcome, req, early)
  const log = (name: string) => ({
    line: (text: string) => foreignText.print(`${name}: ${text}`),
    warning: (text: string) => jobLog.warning(text, { title: `Server ${name}` }),
    phase: (phase: string) => {
      foreignText.resume()
      core.info(`${name}: ${phase}`)
    }
  })
  const where = target.lb
    ? `${target.servers.length} app server(s) behind ${serverName(target.lb.ssh)}`
    : `${target.servers.length} server(s)`
  core.info(
    `${req.action === 'rollback' ? 'Rollback' : 'Deploy'} on ${where}: prepare every one, then ${config.fleet.promote ? 'switch all or none' : 'stop (promote: false)'}`
  )
  try {
    const r = await runFleet(
      target.servers,
      target.lb,
      config,
      { ...req, actor: ctx.actor, runUrl: ctx.runUrl },
      log
    )
    Object.assign(outcome, {
      deployed: r.deployed,
      prepared: r.prepared,
      color: r.color,
      previousColor: r.previousColor,
      events: withEvents(outcome, r.events),
      history: r.history,
      servers: r.servers,
      image: r.image ?? outcome.image
    })
    if (req.action === 'rollback') outcome.version = r.version
  } catch (e) {
    outcome.failedPhase ??= 'on the servers (each one below)'
    if (e instanceof FleetError) {
      outcome.servers = e.servers
      outcome.events = withEvents(outcome, e.events)
      outcome.history = e.history
    }
    throw e
  } finally {
    foreignText.resume()
  }
  if (config.fleet.previewFile && outcome.color) {
    const on = target.lb ? [target.lb] : target.servers
    outcome.previews = on.map((s) => `/${outcome.color}/ on the nginx of ${serverName(s.ssh)}`)
  }
  for (const s of outcome.servers ?? [])
    core.info(`${s.name}: ${s.state}${s.color ? ` (${s.color}, ${s.version})` : ''}`)
  if (outcome.prepared)
    jobLog.notice(
      `${outcome.version ?? outcome.image} is prepared on ${where} as ${outcome.color}, not switched to (promote: false).${outcome.previews ? ` Try it at ${outcome.previews.join(', ')}.` : ''} Run again with promote: true to switch to it.`,
      { title: 'Prepared, not switched' }
    )
  else
    core.info(
      `${config.app.name} ${outcome.version ?? outcome.image} serves from ${outcome.color} on ${where}${outcome.previousColor ? ` (was ${outcome.previousColor})` : ''}`
    )
}

/**
 * A deploy to one server over SSH overlaps the build: the script starts once the version is known,
 * takes the lock, checks the server and finds the serving color while the image builds, then waits
 * for `pull` (src/remote/steps/await.sh) this long at most, so a runner that dies frees the lock.
 */
export const BUILD_WAIT_S = 3600
/** The script's exit code when it gave up waiting (await.sh): the runner starts it anew. */
const AWAIT_GAVE_UP = 75

function overlapsBuild(config: Config): boolean {
  return !config.fleet.several && config.engine.kind === 'ssh'
}

interface EarlyStart {
  session: RemoteSession
  log: ServerLog
  /** the image is pushed: the script goes on (its output, held until now, is printed) */
  go(): void
  /** the build failed: the script ends with nothing changed */
  abort(): Promise<void>
}

function startEarly(
  shell: RemoteShell,
  config: Config,
  ctx: RunContext,
  req: Pick<RemoteRequest, 'action' | 'image' | 'version'>,
  outcome: Outcome
): EarlyStart {
  const log = new ServerLog(config.ssh.host)
  log.hold()
  runnerEvent(outcome, 'sent')
  const session = startRemote(
    shell,
    config,
    { ...req, actor: ctx.actor, runUrl: ctx.runUrl, buildWait: BUILD_WAIT_S },
    log
  )
  return {
    session,
    log,
    go() {
      log.release()
      session.arm()
      session.send('pull')
      session.close()
    },
    async abort() {
      session.send('abort')
      session.close()
      // the script ends at once, unless it still waits for another run's lock: then not for it
      await Promise.race([session.result.catch(() => undefined), sleep(10_000)])
      log.end()
    }
  }
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms).unref())

async function switchOnServer(
  shell: RemoteShell,
  config: Config,
  ctx: RunContext,
  outcome: Outcome,
  req: Pick<RemoteRequest, 'action' | 'image' | 'version' | 'target'>,
  early?: EarlyStart
): Promise<void> {
  const log = early?.log ?? new ServerLog(config.ssh.host)
  const run = { ...req, actor: ctx.actor, runUrl: ctx.runUrl }
  try {
    let r
    try {
      if (!early) runnerEvent(outcome, 'sent')
      r = early ? await early.session.result : await runRemote(shell, config, run, log)
    } catch (e) {
      // the build outlasted the script's wait: it changed nothing, so it runs again
      if (!(e instanceof RemoteError && e.code === AWAIT_GAVE_UP)) throw e
      core.info(`The server stopped waiting for the image after ${BUILD_WAIT_S} s: starting again`)
      runnerEvent(outcome, 'sent')
      r = await runRemote(shell, config, run, log)
    }
    outcome.deployed = r.deployed
    outcome.color = r.color
    outcome.previousColor = r.previousColor
    outcome.events = withEvents(outcome, r.events)
    outcome.history = r.history
    outcome.openConnections = r.openConnections
    outcome.image = r.image ?? outcome.image
    outcome.serving = r.serving
    if (req.action === 'rollback') outcome.version = r.version
  } catch (e) {
    outcome.events = withEvents(outcome, (e as { events?: RemoteEvent[] }).events ?? [])
    outcome.history = (e as { history?: HistoryEntry[] }).history ?? []
    outcome.serving = (e as { serving?: Serving }).serving
    outcome.failedPhase ??= log.lastPhase
      ? `${config.ssh.host}: ${log.lastPhase}`
      : `on ${config.ssh.host}`
    throw e
  } finally {
    log.end()
  }
  core.info(
    `${config.app.name} ${outcome.version ?? outcome.image} serves from ${outcome.color}${outcome.previousColor ? ` (was ${outcome.previousColor})` : ''}`
  )
}
