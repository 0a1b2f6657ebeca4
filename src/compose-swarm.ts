// engine swarm: a compose service as `docker service create` arguments, Compose's `deploy:` keys
// included (replicas, update and rollback order, resources, restart policy, placement). The server
// script takes them as the run arguments (so a rollback puts them back as they ran) and derives
// what `docker service update` needs from them (steps/swarm.sh, swarm_args): `--mount` becomes
// `--mount-add` (same target: replaced), `--host` `--host-add`, and so on.
import { durationSeconds, isObj, mountsOf, type Json, type Obj } from './compose-service.js'

/** Keys a service cannot have under Swarm, and why. */
const NOT_ON_SWARM: Record<string, string> = {
  shm_size: 'a Swarm service has no shm size; mount a tmpfs on /dev/shm instead',
  memswap_limit: 'a Swarm service has no swap limit; use deploy.resources.limits.memory'
}

/** deploy: keys bg-deploy maps onto the service. */
const DEPLOY_KEYS = new Set([
  'mode',
  'replicas',
  'labels',
  'update_config',
  'rollback_config',
  'resources',
  'restart_policy',
  'placement',
  'endpoint_mode'
])

const quote = (w: string) => `'${w.replace(/'/g, `'\\''`)}'`
/** A command as the docker CLI's `--entrypoint`/`--args` take it: one string it splits like a shell. */
export const shellWords = (words: string[]) => words.map(quote).join(' ')

const ms = (v: Json | undefined, where: string, problems: string[]): string | undefined => {
  if (v === undefined || v === null) return undefined
  const s = durationSeconds(v)
  if (s === undefined) {
    problems.push(`${where}: not a duration such as 10s or 1m30s.`)
    return undefined
  }
  return `${Math.round(s * 1000)}ms`
}

/**
 * The create arguments of service `d` (interpolated). Each setting is always given, to its
 * default when the file has none (`--entrypoint ''`, `--read-only=false`), so an update to a
 * version whose file dropped a key resets it.
 */
export function swarmArgs(
  d: Obj,
  root: Obj,
  env: Record<string, string | undefined>,
  app: string,
  at: string,
  problems: string[]
): string[] {
  const args: string[] = []
  const flag = (opt: string, v: Json | undefined) => {
    if (v !== undefined && v !== null) args.push(opt, String(v))
  }
  for (const [k, why] of Object.entries(NOT_ON_SWARM))
    if (d[k] !== undefined) problems.push(`${at}.${k} does not apply with engine swarm: ${why}.`)
  // cap_add/cap_drop: Swarm services take them (Docker 20.10+)
  for (const c of Array.isArray(d.cap_add) ? d.cap_add : []) args.push('--cap-add', String(c))
  for (const c of Array.isArray(d.cap_drop) ? d.cap_drop : []) args.push('--cap-drop', String(c))
  const ep = d.entrypoint
  args.push(
    '--entrypoint',
    ep === undefined || ep === null
      ? ''
      : Array.isArray(ep)
        ? shellWords(ep.map(String))
        : String(ep)
  )
  for (const m of mountsOf(d, root, env, app, at, problems)) {
    if ([m.source, m.target].some((x) => /[,"\s]/.test(x)))
      problems.push(
        `${at}.volumes: ${m.source || m.target}: a Swarm mount takes no comma, quote or space in its paths.`
      )
    const parts = [`type=${m.type}`, m.source && `source=${m.source}`, `target=${m.target}`]
    if (m.readOnly) parts.push('readonly')
    args.push('--mount', parts.filter(Boolean).join(','))
  }
  for (const t of d.tmpfs === undefined ? [] : Array.isArray(d.tmpfs) ? d.tmpfs : [d.tmpfs])
    args.push('--mount', `type=tmpfs,target=${String(t).split(':')[0]}`)
  for (const n of Array.isArray(d.networks)
    ? d.networks.map(String)
    : isObj(d.networks ?? null)
      ? Object.keys(d.networks as Obj)
      : []) {
    const def = isObj(root.networks ?? null) ? (root.networks as Obj)[n] : undefined
    if (isObj(def ?? null) && (def as Obj).external === true)
      args.push('--network', String((def as Obj).name ?? n))
    // not external: compose-service.ts refuses it
  }
  const hosts = d.extra_hosts
  if (Array.isArray(hosts))
    for (const h of hosts.map(String)) args.push('--host', h.replace(/[=]/, ':'))
  else if (isObj(hosts ?? null))
    for (const [h, ip] of Object.entries(hosts as Obj))
      args.push('--host', `${h}:${Array.isArray(ip) ? ip[0] : ip}`)
  flag('--user', d.user)
  flag('--workdir', d.working_dir)
  flag('--stop-signal', d.stop_signal)
  const grace = ms(d.stop_grace_period, `${at}.stop_grace_period`, problems)
  if (grace) args.push('--stop-grace-period', grace)
  if (Array.isArray(d.labels))
    for (const l of d.labels.map(String)) args.push('--container-label', l)
  else if (isObj(d.labels ?? null))
    for (const [k, v] of Object.entries(d.labels as Obj))
      args.push('--container-label', v === null ? k : `${k}=${v}`)
  if (isObj(d.ulimits ?? null))
    for (const [k, v] of Object.entries(d.ulimits as Obj))
      args.push('--ulimit', isObj(v) ? `${k}=${v.soft}:${v.hard}` : `${k}=${v}`)
  args.push(`--read-only=${d.read_only === true}`)
  args.push(`--init=${d.init === true}`)
  if (isObj(d.logging ?? null)) {
    const l = d.logging as Obj
    flag('--log-driver', l.driver)
    if (isObj(l.options ?? null))
      for (const [k, v] of Object.entries(l.options as Obj))
        args.push('--log-opt', `${k}=${v ?? ''}`)
  }
  flag('--limit-memory', d.mem_limit)
  flag('--limit-cpu', d.cpus)
  flag('--reserve-memory', d.mem_reservation)
  flag('--limit-pids', d.pids_limit)
  if (isObj(d.healthcheck ?? null) && (d.healthcheck as Obj).disable !== true) {
    const h = d.healthcheck as Obj
    for (const [k, opt] of [
      ['interval', '--health-interval'],
      ['timeout', '--health-timeout'],
      ['start_period', '--health-start-period']
    ] as const) {
      const v = ms(h[k], `${at}.healthcheck.${k}`, problems)
      if (v) args.push(opt, v)
    }
    flag('--health-retries', h.retries)
  }
  if (isObj(d.deploy ?? null)) args.push(...deployArgs(d.deploy as Obj, `${at}.deploy`, problems))
  return args
}

/** Compose's deploy: as service arguments (the service's own: replicas, update and rollback). */
function deployArgs(dep: Obj, at: string, problems: string[]): string[] {
  const args: string[] = []
  const flag = (opt: string, v: Json | undefined) => {
    if (v !== undefined && v !== null) args.push(opt, String(v))
  }
  for (const k of Object.keys(dep))
    if (!DEPLOY_KEYS.has(k) && !k.startsWith('x-'))
      problems.push(`${at}.${k} is not carried over by bg-deploy. Remove it.`)
  if (dep.mode !== undefined && dep.mode !== 'replicated')
    problems.push(
      `${at}.mode: ${String(dep.mode)}: bg-deploy runs the web as a replicated service (replicas). Remove the key, or set replicated.`
    )
  flag('--replicas', dep.replicas)
  flag('--endpoint-mode', dep.endpoint_mode)
  if (isObj(dep.labels ?? null))
    for (const [k, v] of Object.entries(dep.labels as Obj))
      args.push('--label', v === null ? k : `${k}=${v}`)
  else if (Array.isArray(dep.labels)) for (const l of dep.labels) args.push('--label', String(l))
  for (const [key, prefix] of [
    ['update_config', '--update'],
    ['rollback_config', '--rollback']
  ] as const) {
    const u = isObj(dep[key] ?? null) ? (dep[key] as Obj) : {}
    if (
      key === 'update_config' &&
      u.failure_action !== undefined &&
      u.failure_action !== 'rollback'
    )
      problems.push(
        `${at}.update_config.failure_action: ${String(u.failure_action)}: bg-deploy keeps the old version serving when an update fails, so Swarm must roll back. Remove the key, or set rollback.`
      )
    else flag(`${prefix}-failure-action`, u.failure_action)
    flag(`${prefix}-parallelism`, u.parallelism)
    flag(`${prefix}-order`, u.order)
    flag(`${prefix}-max-failure-ratio`, u.max_failure_ratio)
    const delay = ms(u.delay, `${at}.${key}.delay`, problems)
    if (delay) args.push(`${prefix}-delay`, delay)
    const monitor = ms(u.monitor, `${at}.${key}.monitor`, problems)
    if (monitor) args.push(`${prefix}-monitor`, monitor)
  }
  const res = isObj(dep.resources ?? null) ? (dep.resources as Obj) : {}
  const lim = isObj(res.limits ?? null) ? (res.limits as Obj) : {}
  const rsv = isObj(res.reservations ?? null) ? (res.reservations as Obj) : {}
  flag('--limit-cpu', lim.cpus)
  flag('--limit-memory', lim.memory)
  flag('--limit-pids', lim.pids)
  flag('--reserve-cpu', rsv.cpus)
  flag('--reserve-memory', rsv.memory)
  for (const k of Object.keys(rsv))
    if (!['cpus', 'memory'].includes(k))
      problems.push(
        `${at}.resources.reservations.${k} is not carried over by bg-deploy. Remove it.`
      )
  const rp = isObj(dep.restart_policy ?? null) ? (dep.restart_policy as Obj) : {}
  flag('--restart-condition', rp.condition)
  flag('--restart-max-attempts', rp.max_attempts)
  const rdelay = ms(rp.delay, `${at}.restart_policy.delay`, problems)
  if (rdelay) args.push('--restart-delay', rdelay)
  const window = ms(rp.window, `${at}.restart_policy.window`, problems)
  if (window) args.push('--restart-window', window)
  const pl = isObj(dep.placement ?? null) ? (dep.placement as Obj) : {}
  for (const c of Array.isArray(pl.constraints) ? pl.constraints : [])
    args.push('--constraint', String(c))
  for (const p of Array.isArray(pl.preferences) ? pl.preferences : [])
    if (isObj(p)) for (const [k, v] of Object.entries(p)) args.push('--placement-pref', `${k}=${v}`)
  flag('--replicas-max-per-node', pl.max_replicas_per_node)
  return args
}
