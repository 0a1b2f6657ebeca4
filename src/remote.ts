import { readFileSync } from 'node:fs'
import { PassThrough } from 'node:stream'
import { StringDecoder } from 'node:string_decoder'
import {
  checkResult,
  parseEvent,
  parseHistoryLine,
  unescapeMarker,
  type HistoryEntry,
  type ServerResult
} from './answer.js'
import type { Config } from './config.js'
import {
  ROLE_SECRETS,
  STAGES,
  type Command,
  type EventName,
  type Marker,
  type Parameter,
  type Role,
  type Stage
} from './protocol.js'
export type { HistoryEntry } from './answer.js'
import { sanitizeForeign } from './foreign.js'
import type { ExecResult, RemoteShell } from './ssh.js'
import { versionProblem } from './version.js'

/**
 * The blue-green script, sent on stdin: src/remote's parts, joined in order into build/deploy.sh
 * (scripts/join-remote.mjs, the first step of `npm run bundle`), which the bundle ships as
 * dist/deploy.sh.
 */
export function loadDeployScript(): string {
  return readFileSync(new URL('../build/deploy.sh', import.meta.url), 'utf8')
}

/** What the server is asked to do. */
export interface RemoteRequest {
  action: 'deploy' | 'rollback'
  /** rollback: 'previous' or a version */
  target?: string
  /** full image reference to run, repository:tag */
  image: string
  version?: string
  actor: string
  runUrl: string
  /** in a run over several servers (fleet.ts): this server's part; default single */
  role?: Role
  /** role app: the color to start (the load balancer's idle one) */
  color?: string
  /** role lb: the app servers as nginx reaches them, host or [IPv6] */
  lbServers?: string[]
  /**
   * role single, deploy: the script prepares while the runner builds, then waits up to this many
   * seconds for `pull` (src/remote/steps/await.sh); stdin stays open until close()
   */
  buildWait?: number
}

/** Quote one word for a POSIX shell. The only place remote shell quoting happens. */
export function shellQuote(word: string): string {
  return `'${word.replace(/'/g, `'\\''`)}'`
}

/** The script's key=value arguments: everything that is not secret. */
export function scriptArgs(
  config: Config,
  req: Omit<RemoteRequest, 'action'> & { action: RemoteRequest['action'] | 'status' }
): string[] {
  const a: [Parameter, string | number | undefined][] = [
    ['action', req.action],
    ['target', req.target],
    ['app', config.app.name],
    ['image', req.image],
    ['version', req.version],
    ['container_port', config.app.containerPort],
    ['blue_port', config.app.bluePort],
    ['green_port', config.app.greenPort],
    ['network', config.app.network],
    ['env_file', config.app.envFile],
    ['health_path', config.health.path],
    ['health_timeout', config.health.timeout],
    ['health_interval', config.health.interval],
    ['drain_timeout', config.drainTimeout],
    ['upstream_file', config.nginx.upstreamFile],
    ['upstream_name', config.nginx.upstreamName],
    ['nginx_test', config.nginx.testCommand],
    ['nginx_reload', config.nginx.reloadCommand],
    ['switch_mode', config.switch.mode],
    ['live_port', config.switch.livePort],
    ['registry', config.registry],
    ['registry_user', config.pull.username],
    ['actor', req.actor],
    ['run_url', req.runUrl],
    ['role', req.role],
    ['color', req.color],
    ['bind_address', config.fleet.bindAddress],
    ['lb_servers', req.lbServers?.join(',')],
    ['preview_file', config.fleet.previewFile],
    ['watch', config.after.watch],
    ['watch_max_error_rate', config.after.maxErrorRate],
    ['watch_max_health_failures', config.after.maxHealthFailures],
    ['keep_warm', config.after.keepWarm],
    ['build_wait', req.buildWait],
    ...(config.engine.kind === 'swarm'
      ? ([
          ['engine', 'swarm'],
          ['replicas', config.engine.replicas],
          ['health_cmd', config.engine.healthCmd],
          ['max_parallel', config.engine.parallelism]
        ] as [Parameter, string | number | undefined][])
      : [])
  ]
  return a.filter(([, v]) => v !== undefined && v !== '').map(([k, v]) => `${k}=${v}`)
}

/** The remote command line: constant program, quoted non-secret arguments. */
export function remoteCommand(args: string[]): string {
  return ['bash', '-s', '--', ...args.map(shellQuote)].join(' ')
}

const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64')

/**
 * stdin: the script, then the secrets as `name base64` lines, then `end`: only those the role's
 * steps read (ROLE_SECRETS), so the load balancer and `status` get none. The pull credential is
 * the one the servers were given (config.pull: none, a pull credential, or the push one when the
 * workflow says so).
 */
export function remoteStdin(
  script: string,
  config: Config,
  role: Role | 'status' = 'single'
): string {
  const reads = role === 'status' ? [] : ROLE_SECRETS[role]
  const lines: string[] = []
  if (reads.includes('registry_password') && config.pull.password)
    lines.push(`registry_password ${b64(config.pull.password)}`)
  if (reads.includes('env')) for (const [k, v] of config.app.env) lines.push(`env ${k} ${b64(v)}`)
  if (reads.includes('run_arg'))
    for (const a of config.app.dockerRunArgs) lines.push(`run_arg ${b64(a)}`)
  lines.push('end')
  return `${script.endsWith('\n') ? script : script + '\n'}${lines.join('\n')}\n`
}

export interface RemoteEvent {
  name: EventName
  ms: number
}

export interface RemoteResult extends ServerResult {
  events: RemoteEvent[]
  /** the last entries of the server's deploy history, oldest first */
  history: HistoryEntry[]
  serving?: Serving
}

/** The color and version serving on a server, as its state file says. */
export interface Serving {
  color: 'blue' | 'green'
  version: string
}

/** Callbacks the output is streamed to (core.info / startGroup / endGroup in the action). */
export interface RemoteLog {
  /** a line of the server's output: foreign text, to be printed inert */
  line(text: string): void
  phase(name: string): void
  /** Something the user should fix on the server, though this run goes on (an annotation). */
  warning(text: string): void
}

/** The fields a stage came with (color, previous_color, version, image), as the script sent them. */
export type StageFields = Record<string, string>

/** Longest line kept whole: a server that never sends a newline cannot fill the runner's memory. */
export const MAX_LINE = 64 * 1024
/**
 * What a server can make the runner hold: history rows (the last ones kept; the script sends 10),
 * timeline events and warning annotations per run (the first ones kept; a run has about 10 events).
 */
export const MAX_HISTORY = 20
export const MAX_EVENTS = 100
export const MAX_WARNINGS = 20
const PHASE = /^[\w .()-]{1,200}$/

/**
 * Splits streamed chunks into lines and interprets the script's marker lines. Markers count only
 * on the script's stdout, which carries nothing else (the script sends every command's output to
 * stderr); stderr is only ever shown, never interpreted.
 */
export class OutputParser {
  private buffers = { out: '', err: '' }
  private decoders = { out: new StringDecoder('utf8'), err: new StringDecoder('utf8') }
  events: RemoteEvent[] = []
  history: HistoryEntry[] = []
  result?: Record<string, string>
  error?: string
  /** what serves on the server as its script ended */
  serving?: Serving
  tail: string[] = []
  private warnings = 0

  constructor(
    private readonly log: RemoteLog,
    private readonly onStage: (stage: Stage, fields: StageFields) => void = () => {}
  ) {}

  push(stream: 'out' | 'err', chunk: Buffer | string): void {
    let text =
      this.buffers[stream] +
      (typeof chunk === 'string' ? chunk : this.decoders[stream].write(chunk))
    let nl: number
    while ((nl = text.indexOf('\n')) >= 0 || text.length > MAX_LINE) {
      const end = nl >= 0 && nl <= MAX_LINE ? nl : MAX_LINE
      this.handle(stream, text.slice(0, end))
      text = text.slice(end === nl ? end + 1 : end)
    }
    this.buffers[stream] = text
  }

  flush(): void {
    for (const s of ['out', 'err'] as const) {
      const rest = this.buffers[s] + this.decoders[s].end()
      if (rest) this.handle(s, rest)
      this.buffers[s] = ''
    }
  }

  private handle(stream: 'out' | 'err', raw: string): void {
    // every string from the server passes here first: one sanitizer for every output path
    const line = sanitizeForeign(raw)
    const m = stream === 'out' ? /^::bg-deploy-([a-z]+):: (.*)$/.exec(line) : null
    if (m) {
      const text = m[2]!
      /** a marker's text, unescaped onto its lines, as safe as any other line */
      const said = () => sanitizeForeign(unescapeMarker(text))
      switch (m[1] as Marker) {
        case 'phase': {
          const name = unescapeMarker(text)
          if (PHASE.test(name)) this.log.phase(name)
          return
        }
        case 'event': {
          const e = parseEvent(text)
          if (e && this.events.length < MAX_EVENTS) this.events.push(e)
          return
        }
        case 'result':
          this.result = Object.fromEntries(
            unescapeMarker(text)
              .split(' ')
              .map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)])
          )
          return
        case 'history': {
          const h = parseHistoryLine(unescapeMarker(text))
          if (h) this.history = [...this.history, h].slice(-MAX_HISTORY)
          return
        }
        case 'serving': {
          const f = Object.fromEntries(
            unescapeMarker(text)
              .split(' ')
              .map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)])
          )
          // foreign text: only a color and a version that could be ours are kept
          if (/^(blue|green)$/.test(f.color ?? '') && f.version && !versionProblem(f.version))
            this.serving = { color: f.color as 'blue' | 'green', version: f.version }
          return
        }
        case 'warning':
          if (this.warnings++ < MAX_WARNINGS) this.log.warning(said())
          return
        case 'error':
          this.error = said().slice(0, MAX_LINE)
          return
        case 'await': {
          const [stage, ...kv] = unescapeMarker(text).split(' ')
          if (!(STAGES as readonly string[]).includes(stage ?? '')) return
          this.onStage(
            stage as Stage,
            Object.fromEntries(
              kv.map((f) => [f.slice(0, f.indexOf('=')), f.slice(f.indexOf('=') + 1)])
            )
          )
          return
        }
      }
    }
    this.tail = [...this.tail.slice(-19), line]
    this.log.line(line)
  }
}

/** Run the script on the server and turn its output into a result, or an error that explains. */
export async function runRemote(
  shell: RemoteShell,
  config: Config,
  req: RemoteRequest,
  log: RemoteLog,
  script = loadDeployScript()
): Promise<RemoteResult> {
  return startRemote(shell, config, req, log, script).result
}

/**
 * The script running on one server in a run over several, or on the one server while the runner
 * builds: the stages it reports, the commands it is sent, and its result. Its stdin stays open until close(); a script that loses it (the runner
 * died) acts as its role says (src/remote/main.sh).
 */
export interface RemoteSession {
  /** the stage's fields once the script reports it; rejects with the run's error if it ends first */
  reached(stage: Stage): Promise<StageFields>
  send(command: Command | `switch ${'blue' | 'green'}`): void
  /** no more commands: the script reads end of input */
  close(): void
  /** start the command-timeout clock (at once, unless the script waits for the build first) */
  arm(): void
  readonly result: Promise<RemoteResult>
}

export function startRemote(
  shell: RemoteShell,
  config: Config,
  req: RemoteRequest,
  log: RemoteLog,
  script = loadDeployScript()
): RemoteSession {
  const stages = new Map<Stage, StageFields>()
  const waiting = new Map<
    Stage,
    { resolve: (f: StageFields) => void; reject: (e: Error) => void }[]
  >()
  const parser = new OutputParser(log, (stage, fields) => {
    stages.set(stage, fields)
    for (const w of waiting.get(stage) ?? []) w.resolve(fields)
    waiting.delete(stage)
  })
  const stdin = new PassThrough()
  stdin.write(remoteStdin(script, config, req.role))
  if ((!req.role || req.role === 'single') && !req.buildWait) stdin.end()
  // command-timeout: a script that hangs (a stuck lock, pull or docker) does not hold the runner;
  // its connection is closed, as when the runner dies
  let timer: NodeJS.Timeout | undefined
  let timedOut = false
  let expire: (r: ExecResult) => void = () => undefined
  const expired = new Promise<ExecResult>((resolve) => (expire = resolve))
  const arm = () => {
    if (timer) return
    timer = setTimeout(() => {
      timedOut = true
      shell.dispose()
      // the channel's end, if the closed connection does not report it
      setTimeout(() => expire({ code: null, signal: null }), 2000).unref()
    }, config.commandTimeout * 1000)
    timer.unref()
  }
  const result = Promise.race([
    shell.exec(remoteCommand(scriptArgs(config, req)), {
      stdin,
      onStdout: (c) => parser.push('out', c),
      onStderr: (c) => parser.push('err', c)
    }),
    expired
  ])
    .finally(() => clearTimeout(timer))
    .then((r) => {
      parser.flush()
      if (timedOut)
        throw new RemoteError(
          `The server's script did not finish within command-timeout (${config.commandTimeout} s), so the runner closed its connection. The last thing it reported is in the log above. The server keeps serving what nginx points at, and the next run recovers what this one left half-done. Find what hangs on the server, or raise command-timeout.`,
          null,
          parser.events,
          parser.history
        )
      return answer(parser, r, config, req)
    })
  if (!req.buildWait) arm()
  const settle = (e: Error) => {
    for (const ws of waiting.values()) for (const w of ws) w.reject(e)
    waiting.clear()
  }
  result.then(
    () => settle(new Error('the script finished before it reached this stage')),
    (e: Error) => settle(e)
  )
  return {
    reached(stage) {
      const seen = stages.get(stage)
      if (seen) return Promise.resolve(seen)
      return new Promise((resolve, reject) => {
        waiting.set(stage, [...(waiting.get(stage) ?? []), { resolve, reject }])
      })
    },
    send(command) {
      if (!stdin.writableEnded) stdin.write(`${command}\n`)
    },
    close() {
      if (!stdin.writableEnded) stdin.end()
    },
    arm,
    result
  }
}

function answer(
  parser: OutputParser,
  r: { code: number | null; signal: string | null },
  config: Config,
  req: RemoteRequest
): RemoteResult {
  if (r.code === 0 && parser.result) {
    const checked = checkResult(parser.result, {
      image: config.image,
      action: req.action,
      version: req.version,
      sent: req.image
    })
    return { ...checked, events: parser.events, history: parser.history, serving: parser.serving }
  }
  try {
    fail(parser, r)
  } catch (e) {
    if (e instanceof RemoteError) e.serving = parser.serving
    throw e
  }
}

function fail(parser: OutputParser, r: { code: number | null; signal: string | null }): never {
  if (parser.error) throw new RemoteError(parser.error, r.code, parser.events, parser.history)
  if (r.code === null)
    throw new RemoteError(
      `The SSH session ended before the deploy finished${r.signal ? ` (signal ${r.signal})` : ''}. The server keeps serving what nginx points at; re-run the workflow and the next deploy completes or redoes this one.`,
      null,
      parser.events,
      parser.history
    )
  throw new RemoteError(
    `The deploy script failed with exit code ${r.code}${parser.result ? '' : ' and no result'}. Last output:\n${parser.tail.slice(-10).join('\n')}`,
    r.code,
    parser.events,
    parser.history
  )
}

export class RemoteError extends Error {
  /** what serves on the server as its script ended */
  serving?: Serving
  constructor(
    message: string,
    readonly code: number | null,
    readonly events: RemoteEvent[],
    readonly history: HistoryEntry[] = []
  ) {
    super(message)
    this.name = 'RemoteError'
  }
}

/** What a server says of an app (action status): what serves, its last history entries. */
export interface ServerStatus {
  serving?: Serving
  history: HistoryEntry[]
  /** the script's other lines (e.g. nothing deployed here) */
  lines: string[]
}

/** Ask the server what serves, with the same script: it reads, takes no lock and changes nothing. */
export async function readStatus(
  shell: RemoteShell,
  config: Config,
  script = loadDeployScript()
): Promise<ServerStatus> {
  const lines: string[] = []
  const parser = new OutputParser({
    line: (t) => lines.push(t),
    phase: () => undefined,
    warning: (t) => lines.push(`warning: ${t}`)
  })
  const args = scriptArgs(config, { action: 'status', image: config.image, actor: '', runUrl: '' })
  // no secret is sent: status needs none
  const r = await shell.exec(remoteCommand(args), {
    stdin: remoteStdin(script, config, 'status'),
    onStdout: (c) => parser.push('out', c),
    onStderr: (c) => parser.push('err', c)
  })
  parser.flush()
  if (r.code !== 0)
    throw new Error(
      parser.error ??
        `The status script failed with exit code ${r.code}. Last output:\n${parser.tail.slice(-10).join('\n')}`
    )
  return { serving: parser.serving, history: parser.history, lines }
}
