import * as core from '@actions/core'
import type { Config } from './config.js'
import type { RunContext } from './context.js'
import { readCommit } from './context.js'
import { FleetError, runFleet, serverName, type Server, type ServerOutcome } from './fleet.js'
import { ForeignText } from './foreign.js'
import { buildAndPush, imageLabels } from './image.js'
import type { Registry } from './registry.js'
import { draftRelease, releasedElsewhere, type Release, type ReleasesApi } from './release.js'
import { runRemote, type HistoryEntry, type RemoteEvent, type RemoteRequest } from './remote.js'
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
  /** the remote timeline: pull, started, healthy, switched, drained, stopped */
  events: RemoteEvent[]
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
}

export interface Deps {
  runner: Runner
  releases: (token: string) => ReleasesApi
  registry: (config: Config) => Registry
  connect: (ssh: SshConfig) => Promise<RemoteShell>
}

const REVISION = 'org.opencontainers.image.revision'

/**
 * The whole run: connect (first, so a wrong key or host key fails before anything is pushed) →
 * version → build, tag, push → draft release → blue-green switch on the server → `latest` and
 * the release follow the version that serves.
 */
export async function deploy(
  config: Config,
  ctx: RunContext,
  deps: Deps,
  outcome: Outcome
): Promise<void> {
  const target = await connectAll(config, deps)
  try {
    if (config.rollback) {
      await switchOnServers(
        target,
        config,
        ctx,
        outcome,
        rollbackRequest(config.image, config.rollback)
      )
      await moveLatest(deps.registry(config), config, outcome, 'rollback')
    } else await buildReleaseAndSwitch(config, ctx, deps, outcome, target)
  } finally {
    for (const s of [...target.servers, ...(target.lb ? [target.lb] : [])]) s.shell.dispose()
  }
}

/** The servers of the run, connected: one (a plain run), or several and a load balancer. */
interface Target {
  servers: Server[]
  lb?: Server
}

/** Connect to every server at once; if one fails, the run stops before anything is built. */
async function connectAll(config: Config, deps: Deps): Promise<Target> {
  const all = [...config.hosts, ...(config.lb ? [config.lb] : [])]
  const title =
    all.length === 1
      ? `Connect to ${config.ssh.username}@${config.ssh.host}:${config.ssh.port}`
      : `Connect to ${all.map(serverName).join(', ')}`
  const connected = await core.group(title, () =>
    Promise.allSettled(all.map((ssh) => deps.connect(ssh)))
  )
  const failed = connected.flatMap((r, i) =>
    r.status === 'rejected' ? [{ name: serverName(all[i]!), error: r.reason as Error }] : []
  )
  if (failed.length > 0) {
    for (const r of connected) if (r.status === 'fulfilled') r.value.dispose()
    if (all.length === 1) throw failed[0]!.error
    throw new Error(
      `Cannot connect to every server, so nothing was built or changed. ${failed.map((f) => `${f.name}: ${f.error.message}`).join(' ')}`
    )
  }
  const servers = connected.map((r, i) => ({
    ssh: all[i]!,
    shell: (r as PromiseFulfilledResult<RemoteShell>).value
  }))
  return config.lb
    ? { servers: servers.slice(0, -1), lb: servers[servers.length - 1] }
    : { servers }
}

async function buildReleaseAndSwitch(
  config: Config,
  ctx: RunContext,
  deps: Deps,
  outcome: Outcome,
  target: Target
): Promise<void> {
  const commit = config.version ? {} : await readCommit(ctx, deps.runner)
  let plan = planVersion({
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
  const registry = deps.registry(config)
  const releases =
    plan.version && config.createRelease ? deps.releases(config.githubToken!) : undefined
  const built = plan.version ? await builtBefore(plan, ctx.sha, registry, config, releases) : 'no'
  if (built === 'elsewhere') plan = { source: 'none', tag: shaTag(ctx.sha) }
  outcome.version = plan.version
  if (plan.version)
    core.info(
      `Version ${plan.version} (from ${plan.source === 'input' ? "the 'version' input" : 'the commit message'})`
    )
  else if (plan.notReleased)
    core.notice(`${plan.notReleased} The image is tagged ${plan.tag}; no release is made.`)
  else if (built !== 'elsewhere')
    core.notice(
      `No version found in the commit message, so the image is tagged ${plan.tag} and no release is made. To release, put a version such as v1.2.3 in the commit message or set the 'version' input.`
    )

  const ref = `${config.image}:${plan.tag}`
  outcome.image = ref
  if (built === 'here') {
    core.info(`${ref} holds this commit already (an earlier run pushed it): not built again`)
    outcome.tags = [ref]
  } else {
    const pushed = await core.group(`Build and push ${ref}`, () =>
      buildAndPush(
        deps.runner,
        config,
        {
          refs: [ref],
          labels: imageLabels({ version: plan.version, sha: ctx.sha, sourceUrl: ctx.repositoryUrl })
        },
        ctx.workspace
      )
    )
    outcome.tags = [...pushed.refs]
    outcome.digest = pushed.digest
    core.info(`Pushed ${ref}${pushed.digest ? ` (${pushed.digest})` : ''}`)
  }

  let release: Release | undefined
  if (plan.version && releases) {
    const version = plan.version
    const r = await core.group(`Release ${version} (a draft until it serves)`, () =>
      draftRelease(releases, { tag: version, sha: ctx.sha, prerelease: isPrerelease(version) })
    )
    release = r.release
    outcome.releaseUrl = release.html_url
    outcome.releaseDraft = release.draft === true
    core.info(
      `${r.created ? 'Created draft' : release.draft ? 'Found draft' : 'Found'} release ${version}: ${release.html_url}`
    )
  }

  // a deploy without a version is labelled on the server by its sha- tag, so it can be rolled back to
  await switchOnServers(target, config, ctx, outcome, {
    action: 'deploy',
    image: ref,
    version: plan.version ?? plan.tag
  })
  await moveLatest(registry, config, outcome, 'deploy')
  if (release?.draft && releases && outcome.deployed) {
    const published = await releases.publish(release.id)
    outcome.releaseUrl = published.html_url
    outcome.releaseDraft = false
    core.info(`Published release ${published.tag_name}: ${published.html_url}`)
  }
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
  releases: ReleasesApi | undefined
): Promise<'here' | 'elsewhere' | 'no'> {
  const notice = (where: string) =>
    core.notice(
      `${plan.version} is released already: ${where}. A version is released once, so this commit deploys as ${shaTag(sha)}. To release it, name a new version.`
    )
  const onGithub = releases ? await releasedElsewhere(releases, plan.version!, sha) : undefined
  if (onGithub) {
    notice(onGithub)
    return 'elsewhere'
  }
  let labels: Record<string, string> | undefined
  try {
    labels = await registry.labels(plan.tag)
  } catch (e) {
    throw new Error(
      `Cannot check whether ${config.image}:${plan.tag} is in the registry already (a version is never pushed over): ${(e as Error).message}`
    )
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
      core.warning(
        `${message}. Until it is, a host that pulls latest gets the version rolled back from.`
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
  req: Pick<RemoteRequest, 'action' | 'image' | 'version' | 'target'>
): Promise<void> {
  if (!config.fleet.several)
    return switchOnServer(target.servers[0]!.shell, config, ctx, outcome, req)
  const foreign = new ForeignText()
  const log = (name: string) => ({
    line: (text: string) => foreign.print(`${name}: ${text}`),
    warning: (text: string) => {
      foreign.resume()
      core.warning(`${name}: ${text}`)
    },
    phase: (phase: string) => {
      foreign.resume()
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
      events: r.events,
      history: r.history,
      servers: r.servers,
      image: r.image ?? outcome.image
    })
    if (req.action === 'rollback') outcome.version = r.version
  } catch (e) {
    if (e instanceof FleetError) {
      outcome.servers = e.servers
      outcome.events = e.events
      outcome.history = e.history
    }
    throw e
  } finally {
    foreign.resume()
  }
  if (config.fleet.previewFile && outcome.color) {
    const on = target.lb ? [target.lb] : target.servers
    outcome.previews = on.map((s) => `/${outcome.color}/ on the nginx of ${serverName(s.ssh)}`)
  }
  for (const s of outcome.servers ?? [])
    core.info(`${s.name}: ${s.state}${s.color ? ` (${s.color}, ${s.version})` : ''}`)
  if (outcome.prepared)
    core.notice(
      `${outcome.version ?? outcome.image} is prepared on ${where} as ${outcome.color}, not switched to (promote: false).${outcome.previews ? ` Try it at ${outcome.previews.join(', ')}.` : ''} Run again with promote: true to switch to it.`
    )
  else
    core.info(
      `${config.app.name} ${outcome.version ?? outcome.image} serves from ${outcome.color} on ${where}${outcome.previousColor ? ` (was ${outcome.previousColor})` : ''}`
    )
}

async function switchOnServer(
  shell: RemoteShell,
  config: Config,
  ctx: RunContext,
  outcome: Outcome,
  req: Pick<RemoteRequest, 'action' | 'image' | 'version' | 'target'>
): Promise<void> {
  let open = false
  // the server's output is foreign text: printed inert, the action's own commands resume first
  const foreign = new ForeignText()
  const log = {
    line: (text: string) => foreign.print(text),
    warning: (text: string) => {
      foreign.resume()
      core.warning(`${config.ssh.host}: ${text}`)
    },
    phase: (name: string) => {
      foreign.resume()
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
    outcome.openConnections = r.openConnections
    outcome.image = r.image ?? outcome.image
    if (req.action === 'rollback') outcome.version = r.version
  } catch (e) {
    outcome.events = (e as { events?: RemoteEvent[] }).events ?? []
    outcome.history = (e as { history?: HistoryEntry[] }).history ?? []
    throw e
  } finally {
    foreign.resume()
    if (open) core.endGroup()
  }
  core.info(
    `${config.app.name} ${outcome.version ?? outcome.image} serves from ${outcome.color}${outcome.previousColor ? ` (was ${outcome.previousColor})` : ''}`
  )
}
