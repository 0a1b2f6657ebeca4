// What the server is asked: the script's arguments (everything that is not secret), the command
// line that runs it, and its stdin (the script, then the secret lines its role reads).
import { readFileSync } from 'node:fs'
import type { Config } from '../config.js'
import { ROLE_SECRETS, type Action, type Parameter, type Role } from './protocol.js'

/**
 * The blue-green script, sent on stdin: src/remote's parts, joined in order into build/deploy.sh
 * (scripts/join-remote.mjs, the first step of `npm run bundle`), which the bundle ships as
 * dist/deploy.sh.
 */
export function loadDeployScript(): string {
  return readFileSync(new URL('../../build/deploy.sh', import.meta.url), 'utf8')
}

/** What the server is asked to do. */
export interface RemoteRequest {
  action: Exclude<Action, 'status' | 'check'>
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
  /** the single workers: here (default), elsewhere (another server runs them), leave (promote: false) */
  singleWorkers?: 'here' | 'elsewhere' | 'leave'
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
  req: Omit<RemoteRequest, 'action'> & { action: Action }
): string[] {
  // the pre-switch task goes to the one server that runs it: alone, or in its deploy there
  const task =
    config.app.task &&
    (req.action === 'task' || (req.action === 'deploy' && (req.role ?? 'single') === 'single'))
      ? config.app.task
      : undefined
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
    ['preview_allow', config.fleet.previewAllow.join(' ') || undefined],
    ['watch', config.after.watch],
    ['watch_max_error_rate', config.after.maxErrorRate],
    ['watch_max_health_failures', config.after.maxHealthFailures],
    ['watch_health_only', config.after.healthOnly ? 'true' : undefined],
    ['canary', config.after.canary.steps.join(',') || undefined],
    [
      'canary_step_time',
      config.after.canary.steps.length ? config.after.canary.stepTime : undefined
    ],
    ['canary_key', config.after.canary.steps.length ? config.after.canary.key : undefined],
    ['keep_warm', config.after.keepWarm],
    ['build_wait', req.buildWait],
    ['task', task && b64(task.words.join('\0'))],
    ['command', config.app.command?.length ? b64(config.app.command.join('\0')) : undefined],
    ['health_cmd', config.engine.healthCmd],
    ['task_timeout', task?.timeout],
    ['task_force', task?.force ? 1 : undefined],
    ['workers', workersParam(config)],
    ['single_workers', req.singleWorkers === 'here' ? undefined : req.singleWorkers],
    ['explicit', req.action === 'rollback' ? config.app.given.join(',') : undefined],
    ...(config.engine.kind === 'swarm'
      ? ([
          ['engine', 'swarm'],
          ['replicas', config.engine.replicas],
          ['max_parallel', config.engine.parallelism]
        ] as [Parameter, string | number | undefined][])
      : [])
  ]
  return a.filter(([, v]) => v !== undefined && v !== '').map(([k, v]) => `${k}=${v}`)
}

/** The workers as the script reads them (PARAMETERS.workers), or undefined when there are none. */
function workersParam(config: Config): string | undefined {
  if (config.app.workers.length === 0) return undefined
  const lines = config.app.workers.map((w) =>
    [w.name, w.single ? 1 : 0, w.stopSignal, w.stopTimeout, b64(w.words.join('\0'))].join('\t')
  )
  return b64(lines.join('\n'))
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
  // an accessory: its fields NUL-terminated (steps/accessories.sh); its env may hold a secret
  if (reads.includes('accessory'))
    for (const x of config.app.accessories) {
      const fields = [
        x.name,
        x.image,
        x.network ?? '',
        String(x.args.length),
        ...x.args,
        String(x.env.length),
        ...x.env.map(([k, v]) => `${k}=${v}`),
        ...x.command
      ]
      lines.push(`accessory ${b64(fields.map((f) => `${f}\0`).join(''))}`)
    }
  lines.push('end')
  return `${script.endsWith('\n') ? script : script + '\n'}${lines.join('\n')}\n`
}
