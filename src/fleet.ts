// A run over several servers: prepare every one (in parallel, at most max-parallel at a time), then
// switch all of them or none. With a load-balancer host its nginx switches every app server at
// once; without one each server switches its own nginx, and if one cannot, those that did switch
// back. Each server's script holds its deploy lock from its start to its end, and acts on its own
// when the runner goes away (src/remote/main.sh): the servers end on one version, or on the one
// before, and the next run takes over from what the journal on each server says.
import {
  checkResult,
  previousVersionOf,
  type Color,
  type HistoryEntry,
  type WatchCounts
} from './remote/answer.js'
import type { Config } from './config.js'
import { hostForUrl } from './config-hosts.js'
import type { EventName } from './remote/protocol.js'
import {
  type RemoteEvent,
  type RemoteLog,
  type RemoteResult,
  type StageFields
} from './remote/output.js'
import { type RemoteRequest } from './remote/request.js'
import { watchFleet } from './fleet-watch.js'
import { startRemote, type RemoteSession } from './remote/session.js'
import type { RemoteShell, SshConfig } from './ssh.js'

export interface Server {
  ssh: SshConfig
  shell: RemoteShell
}

/** How one server ended. */
export interface ServerOutcome {
  name: string
  role: 'app' | 'host' | 'lb'
  state: 'switched' | 'prepared' | 'untouched' | 'aborted' | 'undone' | 'failed'
  color?: Color
  version?: string
  error?: string
}

export interface FleetResult {
  deployed: boolean
  /** promote: false: the new color runs on every server, not switched to */
  prepared: boolean
  color?: Color
  previousColor?: Color
  /** the version the first app server served when the run began */
  previousVersion?: string
  version?: string
  image?: string
  events: RemoteEvent[]
  history: HistoryEntry[]
  servers: ServerOutcome[]
  /** what the watch counted over every server (the load balancer's nginx, or the runner's sum) */
  watch?: WatchCounts
}

export class FleetError extends Error {
  constructor(
    message: string,
    readonly servers: ServerOutcome[],
    readonly events: RemoteEvent[] = [],
    readonly history: HistoryEntry[] = []
  ) {
    super(message)
    this.name = 'FleetError'
  }
}

/** The bound on the switch of every server without a load balancer. */
export const SWITCH_BOUND_MS = 30_000

/** How long the switch may take: the canary's steps come first. */
const switchBound = (config: Config) =>
  SWITCH_BOUND_MS + config.after.canary.steps.length * config.after.canary.stepTime * 1000

/** A server's name in messages: host, or host:port when the port is not 22. */
export function serverName(ssh: SshConfig): string {
  return ssh.port === 22 ? ssh.host : `${hostForUrl(ssh.host)}:${ssh.port}`
}

const messageOf = (e: unknown) => (e instanceof Error ? e.message : String(e))

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  return Promise.race([
    p,
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} took more than ${ms / 1000}s`)), ms)
    })
  ]).finally(() => clearTimeout(timer))
}

/**
 * The fleet's timeline: each step when the last server got there (begin and pull: the first).
 */
export function fleetEvents(all: RemoteEvent[][]): RemoteEvent[] {
  const at = new Map<EventName, number>()
  for (const events of all)
    for (const e of events) {
      const seen = at.get(e.name)
      const first = e.name === 'begin' || e.name === 'pull'
      if (seen === undefined || (first ? e.ms < seen : e.ms > seen)) at.set(e.name, e.ms)
    }
  return [...at.entries()].map(([name, ms]) => ({ name, ms })).sort((a, b) => a.ms - b.ms)
}

export interface Running {
  name: string
  /** its script was told everything it awaits: nothing more is sent */
  told?: boolean
  role: ServerOutcome['role']
  session: RemoteSession
  fields?: StageFields
  error?: string
  settled?: RemoteResult | Error
}

/**
 * Run a deploy or rollback on every server: prepare, then (promote) commit, or keep.
 * `log(name)` gives the callbacks for one server's output. With `gate` (a deploy that overlaps the
 * build; `req.buildWait` set) every server starts at once and waits until it resolves: true, the
 * image is pushed; false, nothing is changed anywhere.
 */
export async function runFleet(
  servers: Server[],
  lb: Server | undefined,
  config: Config,
  req: RemoteRequest,
  log: (name: string) => RemoteLog,
  gate?: Promise<boolean>
): Promise<FleetResult> {
  // a deploy's image is the one sent, whatever a server answers; a rollback's is the load
  // balancer's choice from its history, checked, and then sent to every app server
  const expected = (
    fields: StageFields,
    action = req.action,
    version = req.version,
    sent = req.image
  ) => checkResult({ deployed: 'false', ...fields }, { image: config.image, action, version, sent })
  const all: Running[] = []
  const start = (s: Server, role: Running['role'], r: RemoteRequest): Running => {
    const name = serverName(s.ssh)
    const run: Running = {
      name,
      role,
      session: startRemote(s.shell, config, { ...r, role }, log(name))
    }
    run.session.result.then(
      (x) => (run.settled = x),
      (e: Error) => (run.settled = e)
    )
    all.push(run)
    return run
  }
  const outcomes = (state: (r: Running) => ServerOutcome['state']): ServerOutcome[] =>
    all.map((r) => {
      const res = r.settled instanceof Error ? undefined : r.settled
      return {
        name: r.name,
        role: r.role,
        state: r.error ? 'failed' : state(r),
        color: res?.color ?? (r.fields?.color as Color | undefined),
        version: res?.version ?? r.fields?.version,
        error: r.error
      }
    })
  /** tell every running script `command`, close its input, and wait for every one to end */
  const finishAll = async (command: 'abort' | 'keep' | 'finish' | 'undo' | 'revert' | 'pass') => {
    for (const r of all) {
      if (!r.error && !r.told) r.session.send(command)
      r.session.close()
    }
    await Promise.allSettled(all.map((r) => r.session.result))
  }

  let lbRun: Running | undefined
  let appReq: RemoteRequest = req
  // prepare: pull, start the new color, wait for its health; at most max-parallel at a time
  const role = lb ? 'app' : 'host'
  let failed = false
  // the single workers (a scheduler) run on the first server only; a prepare for a later promote
  // leaves them as they are (the promote swaps them)
  const startApp = (s: Server) =>
    start(s, role, {
      ...appReq,
      singleWorkers: s !== servers[0] ? 'elsewhere' : config.fleet.promote ? 'here' : 'leave'
    })
  const prepared = async (run: Running) => {
    try {
      const fields = await run.session.reached('prepared')
      expected(
        fields,
        appReq.action,
        appReq.action === 'deploy' ? appReq.version : undefined,
        appReq.image
      )
      run.fields = fields
    } catch (e) {
      run.error = messageOf(e)
      failed = true
    }
  }
  // a run that overlaps the build starts every app server at once, beside the load balancer: they
  // get ready while the image builds, and hear the color with the word that it is pushed
  const early = gate ? servers.map(startApp) : undefined

  // the load balancer says which color to start and, for a rollback, which version
  if (lb) {
    lbRun = start(lb, 'lb', {
      ...req,
      lbServers: servers.map((s) => hostForUrl(s.ssh.host))
    })
    try {
      const ready = await lbRun.session.reached('ready')
      const checked = expected(ready, req.action, req.action === 'deploy' ? req.version : undefined)
      lbRun.fields = ready
      appReq = {
        ...req,
        color: checked.color,
        version: checked.version,
        image: req.action === 'deploy' ? req.image : (checked.image ?? req.image)
      }
    } catch (e) {
      lbRun.error = messageOf(e)
      await finishAll('abort')
      throw new FleetError(
        `The load balancer ${lbRun.name} could not start the run: ${lbRun.error}. Nothing was changed on any server.`,
        outcomes(() => 'untouched')
      )
    }
  }

  if (early && gate) {
    // the image still builds: every app server gets ready (lock, checks, which color serves, the
    // registry login) and waits for it (steps/await.sh); once it is pushed, all pull at once
    if (!(await gate)) {
      await finishAll('abort')
      throw new FleetError(
        'The image was not pushed (the build, the push or the release failed, above): nothing was changed on any server.',
        outcomes(() => 'untouched')
      )
    }
    for (const r of all) {
      r.session.arm()
      if (r.role === 'host') r.session.send('pull')
      if (r.role === 'app') r.session.send(`pull ${appReq.color as Color}`)
    }
    await Promise.all(early.map(prepared))
  } else {
    const queue = [...servers]
    const worker = async () => {
      for (let s = queue.shift(); s && !failed; s = queue.shift()) await prepared(startApp(s))
    }
    const limit = config.fleet.maxParallel > 0 ? config.fleet.maxParallel : servers.length
    await Promise.all(Array.from({ length: Math.min(limit, servers.length) }, worker))
  }
  const apps = all.filter((r) => r.role !== 'lb')
  const versions = new Set(apps.map((r) => r.fields?.version))
  if (!failed && versions.size > 1) {
    await finishAll('abort')
    throw new FleetError(
      `The servers would roll back to different versions (${apps.map((r) => `${r.name}: ${r.fields?.version}`).join(', ')}), since they served different ones. Nothing was switched. Name the version to roll back to in 'rollback'.`,
      outcomes(() => 'aborted')
    )
  }
  if (failed) {
    await finishAll('abort')
    const bad = all.filter((r) => r.error)
    throw new FleetError(
      `Nothing was switched: ${bad.map((r) => `${r.name} could not get ready: ${r.error}`).join('; ')}. The new color was removed where it had started${servers.length > apps.length ? `, and ${servers.length - apps.length} server(s) were not started` : ''}; every server serves what it served before.`,
      outcomes((r) => (r.role === 'lb' ? 'untouched' : 'aborted'))
    )
  }

  const first = apps[0]!
  const fields = (lbRun ?? first).fields!
  let summed: WatchCounts | undefined
  const result = (deployed: boolean, prepared: boolean): FleetResult => {
    const main = lbRun ?? first
    const res = main.settled instanceof Error ? undefined : main.settled
    return {
      deployed,
      prepared,
      color: (fields.color || undefined) as Color | undefined,
      previousColor: (fields.previous_color || undefined) as Color | undefined,
      ...previousVersionOf(first.fields ?? {}),
      version: fields.version || undefined,
      image: fields.image || undefined,
      events: fleetEvents(
        all.map((r) => (r.settled instanceof Error ? [] : (r.settled?.events ?? [])))
      ),
      history: res?.history ?? [],
      servers: outcomes(() => (deployed ? 'switched' : 'prepared')),
      watch: lbRun ? res?.watch : summed
    }
  }

  if (!config.fleet.promote) {
    await finishAll('keep')
    const failedKeep = all.filter((r) => r.settled instanceof Error)
    if (failedKeep.length > 0)
      throw new FleetError(
        `The new version was prepared, but ${failedKeep.map((r) => `${r.name}: ${messageOf(r.settled)}`).join('; ')}`,
        outcomes(() => 'prepared')
      )
    return result(false, true)
  }

  // commit
  if (lbRun) {
    lbRun.session.send(`switch ${fields.color as Color}`)
    try {
      await withTimeout(lbRun.session.reached('switched'), switchBound(config), 'the switch')
    } catch (e) {
      lbRun.error = messageOf(e)
      await finishAll('abort')
      throw new FleetError(
        `The load balancer ${lbRun.name} could not switch: ${lbRun.error}. The new color was removed from every app server; the previous version serves.`,
        outcomes(() => 'aborted')
      )
    }
    // the watch: the load balancer's nginx sees every app server's answers; the old colors stay
    // warm until it has passed, and a breach switches them all back in one write
    if (config.after.watch > 0) {
      lbRun.session.send('finish')
      lbRun.told = true
      try {
        await withTimeout(
          lbRun.session.reached('watched'),
          (config.after.watch + 120) * 1000,
          'the watch'
        )
      } catch (e) {
        lbRun.error = messageOf(e)
        await finishAll('revert')
        throw new FleetError(
          `The load balancer ${lbRun.name}: ${lbRun.error}. Every app server's new color is stopped (kept for its logs); the previous version serves.`,
          outcomes(() => 'undone')
        )
      }
    }
  } else {
    for (const r of apps) r.session.send('switch')
    const switched = await Promise.allSettled(
      apps.map((r) =>
        withTimeout(r.session.reached('switched'), switchBound(config), 'the switch').catch((e) => {
          r.error = messageOf(e)
          throw e
        })
      )
    )
    if (switched.some((x) => x.status === 'rejected')) {
      await finishAll('undo')
      const bad = apps.filter((r) => r.error)
      throw new FleetError(
        `${bad.map((r) => `${r.name} could not switch: ${r.error}`).join('; ')}. Every server that had switched switched back: the previous version serves everywhere.`,
        outcomes(() => 'undone')
      )
    }
    if (config.after.watch > 0 && fields.previous_color) {
      for (const r of apps) r.session.send('finish')
      const { breach, counts } = await watchFleet(apps, config)
      summed = counts
      if (breach) {
        await finishAll('revert')
        throw new FleetError(
          `the watch window switched back from ${fields.version} on every server: ${breach}. The previous version serves everywhere; the new color is stopped and kept for its logs.`,
          outcomes(() => 'undone')
        )
      }
      await finishAll('pass')
      const failedPass = all.filter((r) => r.settled instanceof Error)
      if (failedPass.length > 0)
        throw new FleetError(
          `${fields.version} passed the watch, but ${failedPass.map((r) => `${r.name}: ${messageOf(r.settled)}`).join('; ')}`,
          outcomes(() => 'switched')
        )
      return result(true, false)
    }
  }
  await finishAll('finish')
  const unfinished = all.filter((r) => r.settled instanceof Error)
  if (unfinished.length > 0) {
    for (const r of unfinished) r.error = messageOf(r.settled)
    throw new FleetError(
      `${fields.version} was switched to, but ${unfinished.map((r) => `${r.name} did not finish: ${r.error}`).join('; ')}. Re-run the workflow: the next run finishes it.`,
      outcomes(() => 'switched')
    )
  }
  return result(true, false)
}
