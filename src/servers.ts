// The servers of a run: connected all at once, then the server script run on one of them (its
// start overlapping the build) or on several (src/fleet.ts), their answers put into the outcome.
import * as core from '@actions/core'
import { pullCredentialNote, type Config } from './config.js'
import { FleetError, runFleet, serverName, type FleetResult, type Server } from './fleet.js'
import { foreignText } from './foreign.js'
import * as jobLog from './job-log.js'
import type { HistoryEntry, RemoteEvent, RemoteLog, Serving } from './remote/output.js'
import { EXIT_CODES } from './remote/protocol.js'
import type { RemoteRequest } from './remote/request.js'
import { RemoteError, runRemote, startRemote, type RemoteSession } from './remote/session.js'
import { runnerEvent, withEvents, type Run } from './run.js'
import { ServerLog } from './server-log.js'
import type { RemoteShell } from './ssh.js'

export function disconnect(target: Target): void {
  for (const s of [...target.servers, ...(target.lb ? [target.lb] : [])]) s.shell.dispose()
}

/** The servers of the run, connected: one (a plain run), or several and a load balancer. */
export interface Target {
  servers: Server[]
  lb?: Server
}

/** Connect to every server at once; if one fails, the run stops before anything is pushed. */
export async function connectAll({ config, deps }: Run): Promise<Target> {
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

export async function switchOnServers(
  run: Run,
  target: Target,
  req: Pick<RemoteRequest, 'action' | 'image' | 'version' | 'target'>,
  early?: EarlyStart | FleetEarly
): Promise<void> {
  const { config, ctx, outcome } = run
  if (!config.fleet.several)
    return switchOnServer(run, target.servers[0]!.shell, req, early as EarlyStart | undefined)
  const where = target.lb
    ? `${target.servers.length} app server(s) behind ${serverName(target.lb.ssh)}`
    : `${target.servers.length} server(s)`
  core.info(
    `${req.action === 'rollback' ? 'Rollback' : 'Deploy'} on ${where}: prepare every one, then ${config.fleet.promote ? 'switch all or none' : 'stop (promote: false)'}`
  )
  try {
    if (req.action === 'deploy' && config.app.task)
      await taskFirst(run, target.servers[config.fleet.taskHost]!, req)
    const r = early
      ? await (early as FleetEarly).fleet
      : await runFleet(
          target.servers,
          target.lb,
          config,
          { ...req, actor: ctx.actor, runUrl: ctx.runUrl },
          fleetLog
        )
    Object.assign(outcome, {
      deployed: r.deployed,
      prepared: r.prepared,
      color: r.color,
      previousColor: r.previousColor,
      previousVersion: r.previousVersion,
      events: withEvents(outcome, r.events),
      history: r.history,
      servers: r.servers,
      watch: r.watch,
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
 * A run over several servers with a pre-switch task: the task runs alone on one server (the first,
 * or pre-switch-host; its
 * own session: pull, the task, its record) before any server starts a color; its failure ends the
 * run with every server untouched. One server runs it inside its deploy (src/remote/main.sh).
 */
async function taskFirst(
  { config, ctx, outcome }: Run,
  server: Server,
  req: Pick<RemoteRequest, 'image' | 'version'>
): Promise<void> {
  const name = serverName(server.ssh)
  core.info(`${name}: the pre-switch task runs here first, before any server starts ${req.version}`)
  const log = new ServerLog(name)
  try {
    const r = await runRemote(
      server.shell,
      config,
      { ...req, action: 'task', actor: ctx.actor, runUrl: ctx.runUrl },
      log
    )
    outcome.events = withEvents(outcome, r.events)
  } catch (e) {
    outcome.events = withEvents(outcome, (e as { events?: RemoteEvent[] }).events ?? [])
    outcome.failedPhase = `${name}: pre-switch task (no server was changed)`
    throw e
  } finally {
    log.end()
  }
}

/**
 * A deploy to one server over SSH overlaps the build: the script starts once the version is known,
 * takes the lock, checks the server and finds the serving color while the image builds, then waits
 * for `pull` (src/remote/steps/await.sh) this long at most, so a runner that dies frees the lock.
 */
export const BUILD_WAIT_S = 3600

/**
 * Whether the servers' scripts start while the image builds: one server over SSH, or several when
 * every one starts at once (no max-parallel below their number) and no pre-switch task must run
 * alone on one of them first. Swarm starts after the push.
 */
export function overlapsBuild(config: Config): boolean {
  if (config.engine.kind !== 'ssh') return false
  if (!config.fleet.several) return true
  const all = config.hosts.length
  const limit = config.fleet.maxParallel
  return !config.app.task && (limit === 0 || limit >= all)
}

/** A run over several servers started while the image builds (runFleet with a gate). */
export interface FleetEarly {
  fleet: Promise<FleetResult>
  /** the image is pushed: every app server pulls */
  go(): void
  /** the build failed: every script ends with nothing changed */
  abort(): Promise<void>
}

export function startFleetEarly(
  { config, ctx }: Run,
  target: Target,
  req: Pick<RemoteRequest, 'action' | 'image' | 'version'>
): FleetEarly {
  let open: (pushed: boolean) => void = () => undefined
  const gate = new Promise<boolean>((resolve) => (open = resolve))
  const fleet = runFleet(
    target.servers,
    target.lb,
    config,
    { ...req, actor: ctx.actor, runUrl: ctx.runUrl, buildWait: BUILD_WAIT_S },
    fleetLog,
    gate
  )
  // awaited by switchOnServers, or settled by abort(): never an unhandled rejection meanwhile
  fleet.catch(() => undefined)
  return {
    fleet,
    go: () => open(true),
    async abort() {
      open(false)
      await Promise.race([fleet.catch(() => undefined), sleep(10_000)])
    }
  }
}

/** One server's output in a run over several: its lines, warnings and phases, by its name. */
function fleetLog(name: string): RemoteLog {
  return {
    line: (text: string) => foreignText.print(`${name}: ${text}`),
    warning: (text: string) => jobLog.warning(text, { title: `Server ${name}` }),
    phase: (phase: string) => {
      foreignText.resume()
      core.info(`${name}: ${phase}`)
    }
  }
}

export interface EarlyStart {
  session: RemoteSession
  log: ServerLog
  /** the image is pushed: the script goes on (its output, held until now, is printed) */
  go(): void
  /** the build failed: the script ends with nothing changed */
  abort(): Promise<void>
}

export function startEarly(
  { config, ctx, outcome }: Run,
  shell: RemoteShell,
  req: Pick<RemoteRequest, 'action' | 'image' | 'version'>
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

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms).unref())

export async function switchOnServer(
  { config, ctx, outcome }: Run,
  shell: RemoteShell,
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
      if (!(e instanceof RemoteError && e.code === EXIT_CODES.await_gave_up)) throw e
      core.info(`The server stopped waiting for the image after ${BUILD_WAIT_S} s: starting again`)
      runnerEvent(outcome, 'sent')
      r = await runRemote(shell, config, run, log)
    }
    outcome.deployed = r.deployed
    outcome.color = r.color
    outcome.previousColor = r.previousColor
    outcome.previousVersion = r.previousVersion
    outcome.events = withEvents(outcome, r.events)
    outcome.history = r.history
    outcome.openConnections = r.openConnections
    outcome.watch = r.watch
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
