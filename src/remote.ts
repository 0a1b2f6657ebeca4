import { readFileSync } from 'node:fs'
import type { Config } from './config.js'
import type { RemoteShell } from './ssh.js'

/** The blue-green script, shipped inside the bundle and sent on stdin. */
export function loadDeployScript(): string {
  return readFileSync(new URL('./remote/deploy.sh', import.meta.url), 'utf8')
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
}

/** Quote one word for a POSIX shell. The only place remote shell quoting happens. */
export function shellQuote(word: string): string {
  return `'${word.replace(/'/g, `'\\''`)}'`
}

/** The script's key=value arguments: everything that is not secret. */
export function scriptArgs(config: Config, req: RemoteRequest): string[] {
  const a: [string, string | number | undefined][] = [
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
    ['registry_user', config.registryUsername],
    ['actor', req.actor],
    ['run_url', req.runUrl]
  ]
  return [
    ...a.filter(([, v]) => v !== undefined && v !== '').map(([k, v]) => `${k}=${v}`),
    ...config.app.dockerRunArgs.map((r) => `run_arg=${r}`)
  ]
}

/** The remote command line: constant program, quoted non-secret arguments. */
export function remoteCommand(args: string[]): string {
  return ['bash', '-s', '--', ...args.map(shellQuote)].join(' ')
}

const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64')

/** stdin: the script, then the secrets as `name base64` lines, then `end`. */
export function remoteStdin(script: string, config: Config): string {
  const lines: string[] = []
  if (config.registryPassword) lines.push(`registry_password ${b64(config.registryPassword)}`)
  for (const [k, v] of config.app.env) lines.push(`env ${k} ${b64(v)}`)
  lines.push('end')
  return `${script.endsWith('\n') ? script : script + '\n'}${lines.join('\n')}\n`
}

export interface RemoteEvent {
  name: string
  ms: number
}

export interface RemoteResult {
  deployed: boolean
  color?: string
  previousColor?: string
  version?: string
  image?: string
  events: RemoteEvent[]
  /** the last entries of the server's deploy history, oldest first */
  history: HistoryEntry[]
}

export interface HistoryEntry {
  time: string
  actor: string
  runUrl: string
  action: string
  version: string
  image: string
  color: string
  result: string
}

/** Callbacks the output is streamed to (core.info / startGroup / endGroup in the action). */
export interface RemoteLog {
  line(text: string): void
  phase(name: string): void
  /** Something the user should fix on the server, though this run goes on (an annotation). */
  warning(text: string): void
}

/** Splits streamed chunks into lines and interprets the script's marker lines. */
export class OutputParser {
  private buffers = { out: '', err: '' }
  events: RemoteEvent[] = []
  history: HistoryEntry[] = []
  result?: Record<string, string>
  error?: string
  tail: string[] = []

  constructor(private readonly log: RemoteLog) {}

  push(stream: 'out' | 'err', chunk: Buffer | string): void {
    const text = this.buffers[stream] + chunk.toString()
    const lines = text.split('\n')
    this.buffers[stream] = lines.pop()!
    for (const l of lines) this.handle(l)
  }

  flush(): void {
    for (const s of ['out', 'err'] as const) {
      if (this.buffers[s]) this.handle(this.buffers[s])
      this.buffers[s] = ''
    }
  }

  private handle(raw: string): void {
    const line = raw.replace(/\r$/, '')
    let m: RegExpExecArray | null
    if ((m = /^::bg-deploy-phase:: (.+)$/.exec(line))) return this.log.phase(m[1]!)
    if ((m = /^::bg-deploy-event:: (\S+) (\d+)$/.exec(line))) {
      this.events.push({ name: m[1]!, ms: Number(m[2]) })
      return
    }
    if ((m = /^::bg-deploy-result:: (.*)$/.exec(line))) {
      this.result = Object.fromEntries(
        m[1]!.split(' ').map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)])
      )
      return
    }
    if ((m = /^::bg-deploy-history:: (.*)$/.exec(line))) {
      const [
        time = '',
        actor = '',
        runUrl = '',
        action = '',
        version = '',
        image = '',
        color = '',
        result = ''
      ] = m[1]!.split('\t')
      this.history.push({ time, actor, runUrl, action, version, image, color, result })
      return
    }
    if ((m = /^::bg-deploy-warning:: (.*)$/.exec(line))) return this.log.warning(m[1]!)
    if ((m = /^::bg-deploy-error:: (.*)$/.exec(line))) {
      this.error = m[1]!
      return
    }
    // never let remote output issue workflow commands (::set-output::, ::add-mask:: ...)
    const safe = line.startsWith('::') ? ` ${line}` : line
    this.tail = [...this.tail.slice(-19), safe]
    this.log.line(safe)
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
  const parser = new OutputParser(log)
  const r = await shell.exec(remoteCommand(scriptArgs(config, req)), {
    stdin: remoteStdin(script, config),
    onStdout: (c) => parser.push('out', c),
    onStderr: (c) => parser.push('err', c)
  })
  parser.flush()
  if (r.code === 0 && parser.result) {
    const x = parser.result
    return {
      deployed: x.deployed === 'true',
      color: x.color || undefined,
      previousColor: x.previous_color || undefined,
      version: x.version || undefined,
      image: x.image || undefined,
      events: parser.events,
      history: parser.history
    }
  }
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
