// One service of a compose file as a color's run spec (src/compose.ts picks the services): Compose's
// interpolation, then each key bg-deploy carries over as what it already sends (env, `docker run`
// arguments, command, health command); a key it does not carry over is refused by name.
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { parseDotenv } from './dotenv.js'
import { splitWords } from './words.js'

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json }
export type Obj = { [k: string]: Json }
export const isObj = (v: Json | undefined): v is Obj =>
  typeof v === 'object' && v !== null && !Array.isArray(v)

/** The service keys bg-deploy carries over, for the web and its workers. */
const CARRIED = new Set([
  'build',
  'image',
  'ports',
  'expose',
  'environment',
  'env_file',
  'command',
  'entrypoint',
  'volumes',
  'healthcheck',
  'networks',
  'extra_hosts',
  'user',
  'working_dir',
  'labels',
  'stop_signal',
  'stop_grace_period',
  'ulimits',
  'cap_add',
  'cap_drop',
  'tmpfs',
  'read_only',
  'shm_size',
  'logging',
  'mem_limit',
  'memswap_limit',
  'mem_reservation',
  'cpus',
  'pids_limit',
  'init',
  'restart',
  'depends_on',
  'deploy'
])

/** Why a key is not carried over, where there is more to say than "not supported". */
const REFUSED: Record<string, string> = {
  container_name:
    'bg-deploy names the containers itself (APP-blue, APP-green), since two run at once during a deploy',
  network_mode: 'the colors are published on their own ports; use networks',
  privileged: 'bg-deploy does not start privileged containers; use cap_add for what it needs',
  secrets: 'give secrets through environment with ${VAR} from the workflow, or env_file',
  configs: 'mount the file with volumes instead',
  profiles: 'give the services to deploy in the file, without profiles',
  extends: 'write the service out in full',
  scale: 'several servers or engine swarm with replicas run more than one',
  links: 'use a network: containers reach each other by name there',
  pid: 'a color shares no namespace with the host',
  ipc: 'a color shares no namespace with the host'
}

/** Compose's interpolation: $$, $VAR, ${VAR}, ${VAR:-d}, ${VAR-d}, ${VAR:?err}, ${VAR?err}. */
export function interpolate(
  text: string,
  env: Record<string, string | undefined>,
  where: string,
  problems: string[]
): string {
  return text.replace(
    /\$(\$|[A-Za-z_][A-Za-z0-9_]*|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?)([-?])((?:[^{}]|\{[^{}]*\})*))?\})/g,
    (whole, body: string, name?: string, colon?: string, op?: string, arg?: string) => {
      if (body === '$') return '$'
      const key = name ?? body
      const value = env[key]
      const unset = value === undefined || (colon === ':' && value === '')
      if (op === '-') return unset ? interpolate(arg ?? '', env, where, problems) : value!
      if (op === '?') {
        if (unset)
          problems.push(
            `${where}: ${key} is not set in the runner's environment${arg ? `: ${arg}` : ''}. Set it in the step's env (from a secret: env: ${key}: \${{ secrets.${key} }}).`
          )
        return value ?? ''
      }
      if (value === undefined) {
        problems.push(
          `${where}: ${whole} names ${key}, which is not set in the runner's environment. Set it in the step's env, or give a default: \${${key}:-default}.`
        )
        return ''
      }
      return value
    }
  )
}

/** Interpolate every string of a value (Compose interpolates values, not keys). */
export function interpolateAll(
  v: Json,
  env: Record<string, string | undefined>,
  where: string,
  problems: string[]
): Json {
  if (typeof v === 'string') return interpolate(v, env, where, problems)
  if (Array.isArray(v)) return v.map((x) => interpolateAll(x, env, where, problems))
  if (isObj(v))
    return Object.fromEntries(
      Object.entries(v).map(([k, x]) => [k, interpolateAll(x, env, `${where}.${k}`, problems)])
    )
  return v
}

/** Compose durations ("1m30s", "10s", "500ms") in seconds. */
export function durationSeconds(v: Json): number | undefined {
  if (typeof v === 'number') return v
  if (typeof v !== 'string') return undefined
  const re = /(\d+(?:\.\d+)?)(h|ms|m|s|us|ns)/g
  let total = 0
  let used = 0
  for (const m of v.matchAll(re)) {
    const n = Number(m[1])
    total += n * { h: 3600, m: 60, s: 1, ms: 0.001, us: 1e-6, ns: 1e-9 }[m[2] as 'h']
    used += m[0].length
  }
  return used === v.length && used > 0 ? total : undefined
}

/** A list or a mapping of KEY=VALUE (environment, labels) as pairs; a bare KEY has no value. */
function pairs(v: Json | undefined, sep = '='): [string, string | undefined][] {
  if (v === undefined || v === null) return []
  if (Array.isArray(v))
    return v.map((x) => {
      const s = String(x)
      const i = s.indexOf(sep)
      return i < 0 ? [s, undefined] : [s.slice(0, i), s.slice(i + 1)]
    })
  if (isObj(v)) return Object.entries(v).map(([k, x]) => [k, x === null ? undefined : String(x)])
  return []
}

const words = (v: Json, where: string, problems: string[]): string[] => {
  if (Array.isArray(v)) return v.map(String)
  try {
    return splitWords(String(v))
  } catch (e) {
    problems.push(`${where}: not quoted like a shell would (${(e as Error).message})`)
    return []
  }
}

export interface ServiceSpec {
  port?: number
  env: [string, string][]
  runArgs: string[]
  command?: string[]
  healthCmd?: string
  stopSignal?: string
  stopTimeout?: number
  /** the service's definition, interpolated */
  def: Obj
}

export function serviceSpec(
  name: string,
  raw: Obj,
  root: Obj,
  env: Record<string, string | undefined>,
  dir: string,
  file: string,
  problems: string[],
  app: string,
  kind: 'app' | 'accessory' = 'app',
  engine: 'ssh' | 'swarm' = 'ssh'
): ServiceSpec {
  const at = `${file}: services.${name}`
  for (const k of Object.keys(raw)) {
    if (k.startsWith('x-') || CARRIED.has(k)) continue
    problems.push(
      `${at}.${k} is not carried over by bg-deploy${REFUSED[k] ? `: ${REFUSED[k]}` : ''}. Remove it, or give it in docker-run-args.`
    )
  }
  const d = interpolateAll(raw, env, at, problems) as Obj
  const out: ServiceSpec = { env: [], runArgs: [], def: d }
  const args = out.runArgs
  // the container port: the target of the one published port, else the one exposed
  const ports = Array.isArray(d.ports) ? d.ports : []
  const targets = ports.map((p) =>
    isObj(p) ? Number(p.target) : Number(String(p).split(':').at(-1)!.split('/')[0])
  )
  const exposed = (Array.isArray(d.expose) ? d.expose : []).map((p) =>
    Number(String(p).split('/')[0])
  )
  const port = targets[0] ?? exposed[0]
  // an accessory publishes what it says (a database's port for a backup job), as Compose does
  if (kind === 'accessory')
    for (const p of ports)
      args.push(
        '-p',
        isObj(p) ? `${p.host_ip ? `${p.host_ip}:` : ''}${p.published ?? ''}:${p.target}` : String(p)
      )
  else if (targets.length > 1 || (targets.length === 0 && exposed.length > 1))
    problems.push(
      `${at}.ports: bg-deploy publishes one container port per color (its own host ports); give one.`
    )
  if (port !== undefined && kind === 'app') {
    if (!Number.isInteger(port) || port < 1 || port > 65535)
      problems.push(`${at}.ports: cannot read the container port.`)
    else out.port = port
  }
  // env_file (read here, relative to the compose file, as Compose does), then environment
  const envFiles =
    d.env_file === undefined ? [] : Array.isArray(d.env_file) ? d.env_file : [d.env_file]
  for (const f of envFiles) {
    const p = isObj(f) ? String(f.path) : String(f)
    const required = isObj(f) ? f.required !== false : true
    let t: string
    try {
      t = readFileSync(path.resolve(dir, p), 'utf8')
    } catch (e) {
      if (required)
        problems.push(
          `${at}.env_file: cannot read ${p} (${(e as NodeJS.ErrnoException).code ?? e}), relative to ${file}.`
        )
      continue
    }
    const parsed = parseDotenv(t)
    for (const pr of parsed.problems)
      problems.push(`${at}.env_file ${p} line ${pr.line}: ${pr.why}.`)
    out.env.push(...parsed.entries)
  }
  for (const [k, v] of pairs(d.environment)) {
    const value = v ?? env[k]
    if (value === undefined) continue // Compose leaves a bare KEY unset when the runner has none
    out.env = out.env.filter(([o]) => o !== k)
    out.env.push([k, value])
  }
  // command and entrypoint: the first entrypoint word is --entrypoint, the rest go before the
  // command, as docker run takes them
  let command =
    d.command === undefined || d.command === null
      ? undefined
      : words(d.command, `${at}.command`, problems)
  if (d.entrypoint !== undefined && d.entrypoint !== null) {
    const ep = words(d.entrypoint, `${at}.entrypoint`, problems)
    if (ep.length > 0) {
      args.push('--entrypoint', ep[0]!)
      command = [...ep.slice(1), ...(command ?? [])]
    }
  }
  out.command = command
  for (const m of mountsOf(d, root, env, app, at, problems))
    if (m.type === 'tmpfs') args.push('--tmpfs', m.target)
    else args.push('-v', `${m.source ? `${m.source}:` : ''}${m.target}${m.readOnly ? ':ro' : ''}`)
  const nets = Array.isArray(d.networks)
    ? d.networks.map(String)
    : isObj(d.networks)
      ? Object.keys(d.networks)
      : []
  for (const n of nets) {
    const def = isObj(root.networks ?? null) ? (root.networks as Obj)[n] : undefined
    if (!isObj(def ?? null) || (def as Obj).external !== true)
      problems.push(
        `${at}.networks: ${n} is not declared external: true, and bg-deploy does not create networks yet. Create it on the server (docker network create NAME) and declare it external.`
      )
    else args.push('--network', String((def as Obj).name ?? n))
  }
  for (const [h, ip] of pairs(d.extra_hosts, Array.isArray(d.extra_hosts) ? undefined : '='))
    args.push(
      '--add-host',
      ip === undefined ? h.replace('=', ':') : `${h}:${Array.isArray(ip) ? ip[0] : ip}`
    )
  const flag = (key: string, opt: string) => {
    if (d[key] !== undefined && d[key] !== null) args.push(opt, String(d[key]))
  }
  flag('user', '--user')
  flag('working_dir', '--workdir')
  flag('shm_size', '--shm-size')
  flag('mem_limit', '--memory')
  flag('memswap_limit', '--memory-swap')
  flag('mem_reservation', '--memory-reservation')
  flag('cpus', '--cpus')
  flag('pids_limit', '--pids-limit')
  flag('stop_signal', '--stop-signal')
  if (typeof d.stop_signal === 'string') out.stopSignal = d.stop_signal
  for (const [k, v] of pairs(d.labels)) args.push('--label', v === undefined ? k : `${k}=${v}`)
  if (d.stop_grace_period !== undefined) {
    const s = durationSeconds(d.stop_grace_period)
    if (s === undefined)
      problems.push(`${at}.stop_grace_period: not a duration such as 30s or 1m30s.`)
    else {
      out.stopTimeout = Math.ceil(s)
      args.push('--stop-timeout', String(Math.ceil(s)))
    }
  }
  if (isObj(d.ulimits ?? null))
    for (const [k, v] of Object.entries(d.ulimits as Obj))
      args.push('--ulimit', isObj(v) ? `${k}=${v.soft}:${v.hard}` : `${k}=${v}`)
  for (const c of Array.isArray(d.cap_add) ? d.cap_add : []) args.push('--cap-add', String(c))
  for (const c of Array.isArray(d.cap_drop) ? d.cap_drop : []) args.push('--cap-drop', String(c))
  for (const t of d.tmpfs === undefined ? [] : Array.isArray(d.tmpfs) ? d.tmpfs : [d.tmpfs])
    args.push('--tmpfs', String(t))
  if (d.read_only === true) args.push('--read-only')
  if (isObj(d.logging ?? null)) {
    const l = d.logging as Obj
    if (l.driver) args.push('--log-driver', String(l.driver))
    for (const [k, v] of pairs(l.options)) args.push('--log-opt', `${k}=${v ?? ''}`)
  }
  if (d.restart !== undefined && !['always', 'unless-stopped'].includes(String(d.restart)))
    problems.push(
      `${at}.restart: ${String(d.restart)}: bg-deploy restarts its containers unless stopped (restart: unless-stopped); remove the key.`
    )
  if (d.init === false)
    problems.push(
      `${at}.init: bg-deploy runs every container with an init process; remove the key.`
    )
  // engine swarm maps deploy: onto the service (src/compose-swarm.ts)
  if (isObj(d.deploy ?? null) && engine === 'ssh') {
    const dep = d.deploy as Obj
    for (const k of Object.keys(dep))
      if (k !== 'resources')
        problems.push(
          `${at}.deploy.${k} is not carried over by bg-deploy with engine ssh (deploy.resources is; engine swarm maps deploy: onto the service). Remove it.`
        )
    const lim = isObj((dep.resources as Obj | undefined)?.limits ?? null)
      ? ((dep.resources as Obj).limits as Obj)
      : {}
    if (lim.cpus !== undefined) args.push('--cpus', String(lim.cpus))
    if (lim.memory !== undefined) args.push('--memory', String(lim.memory))
    if (lim.pids !== undefined) args.push('--pids-limit', String(lim.pids))
  }
  if (isObj(d.healthcheck ?? null)) {
    const h = d.healthcheck as Obj
    if (h.disable !== true) {
      const test = h.test
      const list = Array.isArray(test) ? test.map(String) : undefined
      if (list && list[0] === 'NONE') {
        /* no health check */
      } else if (list && list[0] === 'CMD-SHELL') out.healthCmd = list.slice(1).join(' ')
      else if (list && list[0] === 'CMD')
        out.healthCmd = list
          .slice(1)
          .map((w) => (/^[A-Za-z0-9_./:=@%+-]+$/.test(w) ? w : `'${w.replace(/'/g, `'\\''`)}'`))
          .join(' ')
      else if (typeof test === 'string') out.healthCmd = test
      else
        problems.push(
          `${at}.healthcheck.test: expected a string, or a list starting with CMD or CMD-SHELL.`
        )
      for (const [k, opt] of [
        ['interval', '--health-interval'],
        ['timeout', '--health-timeout'],
        ['start_period', '--health-start-period'],
        ['start_interval', '--health-start-interval']
      ] as const)
        if (h[k] !== undefined) {
          const s = durationSeconds(h[k]!)
          if (s === undefined) problems.push(`${at}.healthcheck.${k}: not a duration such as 10s.`)
          else args.push(opt, `${Math.round(s * 1000)}ms`)
        }
      if (h.retries !== undefined) args.push('--health-retries', String(h.retries))
    }
  }
  if (/[\0\r\n]/.test(out.healthCmd ?? ''))
    problems.push(`${at}.healthcheck.test: one line, please.`)
  return out
}

export interface Mount {
  type: 'volume' | 'bind' | 'tmpfs'
  /** the volume's name on the server, or the bind's absolute path; empty: an anonymous volume */
  source: string
  target: string
  readOnly: boolean
}

/**
 * A service's volumes: named ones keep their Compose name (PROJECT_NAME, the project being the
 * app: see volumeName), binds need an absolute path on the server.
 */
export function mountsOf(
  d: Obj,
  root: Obj,
  env: Record<string, string | undefined>,
  app: string,
  at: string,
  problems: string[]
): Mount[] {
  const out: Mount[] = []
  for (const v of Array.isArray(d.volumes) ? d.volumes : []) {
    const long = isObj(v)
      ? v
      : (() => {
          const parts = String(v).split(':')
          return {
            source: parts.length > 1 ? parts[0]! : null,
            target: parts.length > 1 ? parts[1]! : parts[0]!,
            read_only: parts[2]?.split(',').includes('ro') ?? false
          } as Obj
        })()
    const source = long.source === undefined || long.source === null ? '' : String(long.source)
    const target = String(long.target ?? '')
    const readOnly = long.read_only === true
    if (long.type === 'tmpfs') out.push({ type: 'tmpfs', source: '', target, readOnly })
    else if (source === '') out.push({ type: 'volume', source, target, readOnly })
    else if (source.startsWith('/')) out.push({ type: 'bind', source, target, readOnly })
    else if (/^[.~]/.test(source))
      problems.push(
        `${at}.volumes: ${source} is a path relative to the compose file on your machine, which the server does not have: give an absolute path on the server, or a named volume.`
      )
    else out.push({ type: 'volume', source: volumeName(root, source, env, app), target, readOnly })
  }
  return out
}

/**
 * A named volume's name on the server: its `name:` if it has one, as it is when external, else
 * APP_NAME, as Compose names it in a project called after the app. The same name every deploy and
 * rollback: the data stays.
 */
function volumeName(
  root: Obj,
  source: string,
  env: Record<string, string | undefined>,
  app: string
): string {
  const def = isObj(root.volumes ?? null) ? (root.volumes as Obj)[source] : undefined
  if (isObj(def ?? null) && (def as Obj).name !== undefined)
    return interpolate(String((def as Obj).name), env, 'volumes', [])
  if (isObj(def ?? null) && (def as Obj).external === true) return source
  return `${app}_${source}`
}
