// The app as its compose file describes it (compose-file, compose-service): read on the runner
// (Compose v2 is not in every distribution's packages), interpolated from the runner's environment
// as Compose does, and turned into what bg-deploy already carries: the container port, the env,
// `docker run` arguments, the web's command, its health command, and the workers. A key bg-deploy
// does not carry over is refused by name, never dropped.
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { Ajv, type ErrorObject } from 'ajv'
import { parseDocument } from 'yaml'
import composeSchema from './vendor/compose-spec/compose-spec.json' with { type: 'json' }
import { isObj, serviceSpec, type Json, type Obj } from './compose-service.js'
import { swarmArgs } from './compose-swarm.js'
import type { Worker } from './config-types.js'

export { durationSeconds, interpolate } from './compose-service.js'
/** A service of another image (a database, a cache): started once when missing, never recreated. */
export interface Accessory {
  name: string
  image: string
  /** the network it shares with the app (Compose's default, APP_default), created when missing */
  network?: string
  /** docker run arguments (ports, volumes, its alias on the network...), not the env */
  args: string[]
  env: [string, string][]
  command: string[]
}

export interface ComposeApp {
  service: string
  accessories: Accessory[]
  containerPort?: number
  env: [string, string][]
  runArgs: string[]
  command?: string[]
  healthCmd?: string
  workers: Worker[]
}

export class ComposeError extends Error {
  constructor(readonly problems: string[]) {
    super(problems.join('\n'))
    this.name = 'ComposeError'
  }
}

/** What a worker has of its own; the rest of its definition is the web's. */
const WORKER_OWN = new Set([
  'build',
  'image',
  'command',
  'stop_signal',
  'stop_grace_period',
  'depends_on'
])

/**
 * Read `file` (relative to the workspace) and turn service `service` (or the one with ports, or
 * the only one built here) into the run spec; the services built from the same context or using
 * the same image are its workers.
 */
export function readCompose(
  workspace: string,
  file: string,
  service: string | undefined,
  env: Record<string, string | undefined>,
  app: string,
  engine: 'ssh' | 'swarm' = 'ssh'
): ComposeApp {
  const full = path.resolve(workspace, file)
  let text: string
  try {
    text = readFileSync(full, 'utf8')
  } catch (e) {
    throw new ComposeError([
      `Input 'compose-file': cannot read '${file}' (${(e as NodeJS.ErrnoException).code ?? e}). Expected a path relative to the workspace, such as docker-compose.yml.`
    ])
  }
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true, merge: true })
  if (doc.errors.length > 0)
    throw new ComposeError([`${file}: ${doc.errors[0]!.message.split('\n')[0]!.replace(/:$/, '')}`])
  const root = doc.toJS({ maxAliasCount: 100 }) as Json
  const invalid = schemaProblems(root)
  if (invalid.length > 0)
    throw new ComposeError(
      invalid.map((p) => `${file} does not follow the Compose Specification: ${p}`)
    )
  if (!isObj(root) || !isObj(root.services ?? null))
    throw new ComposeError([`${file}: expected a compose file with a services mapping`])
  const problems: string[] = []
  const services = root.services as Obj
  const names = Object.keys(services)
  const built = names.filter((n) => isObj(services[n]!) && (services[n] as Obj).build !== undefined)
  let web = service
  if (web === undefined) {
    const published = names.filter((n) => (services[n] as Obj)?.ports !== undefined)
    const exposed = names.filter((n) => (services[n] as Obj)?.expose !== undefined)
    web =
      published.length === 1
        ? published[0]
        : published.length === 0 && exposed.length === 1
          ? exposed[0]
          : built.length === 1
            ? built[0]
            : undefined
    if (!web)
      throw new ComposeError([
        `${file}: cannot tell which service is the web one (services: ${names.join(', ')}): name it in compose-service.`
      ])
  }
  if (!isObj(services[web] ?? null))
    throw new ComposeError([
      `Input 'compose-service': ${file} has no service '${web}' (services: ${names.join(', ')}).`
    ])
  const dir = path.dirname(full)
  const webDef = services[web] as Obj
  const sameImage = (d: Obj) =>
    (d.build !== undefined && JSON.stringify(d.build) === JSON.stringify(webDef.build)) ||
    (d.image !== undefined && d.image === webDef.image)
  const workers: Worker[] = []
  const others: string[] = []
  for (const n of names) {
    if (n === web) continue
    const d = services[n] as Obj
    if (isObj(d) && sameImage(d)) {
      // a worker runs with the web's spec and its own command: any other key must say the same
      for (const k of Object.keys(d))
        if (
          !WORKER_OWN.has(k) &&
          !k.startsWith('x-') &&
          JSON.stringify(d[k]) !== JSON.stringify(webDef[k])
        )
          problems.push(
            `${file}: services.${n}.${k}: a worker (same image as ${web}) runs with ${web}'s ${k}; give it the same as ${web}, or remove it.`
          )
      const w = serviceSpec(n, d, root, env, dir, file, problems, app, 'app', engine)
      const cmd = w.command ?? []
      if (cmd.length === 0)
        problems.push(
          `${file}: service ${n} (a worker: same image as ${web}) has no command: give it the one it runs.`
        )
      workers.push({
        name: n.toLowerCase().replace(/[^a-z0-9_.-]/g, '-'),
        words: cmd,
        single: false,
        stopSignal: w.stopSignal ?? 'SIGTERM',
        stopTimeout: w.stopTimeout ?? 30
      })
    } else others.push(n)
  }
  // the others run another image (a database, a cache): accessories, on Compose's default network
  // with the app unless they name networks, reached by their service name as under Compose
  const network = `${app}_default`
  const accessories: Accessory[] = []
  for (const n of others) {
    const d = services[n] as Obj
    if (!isObj(d)) continue
    if (engine === 'swarm') {
      problems.push(
        `${file}: services.${n} runs another image than ${web} (an accessory): with engine swarm, bg-deploy deploys ${web} and its workers only. Run ${n} as a service of its own (docker stack deploy) and leave it out of the file.`
      )
      continue
    }
    if (d.build !== undefined || typeof d.image !== 'string') {
      problems.push(
        `${file}: services.${n} is built from another context than ${web}: bg-deploy builds one image per run. Give it an image: it is then an accessory, started once when missing.`
      )
      continue
    }
    const spec = serviceSpec(n, d, root, env, dir, file, problems, app, 'accessory')
    const args = [...spec.runArgs]
    if (d.networks === undefined) args.unshift('--network', network, '--network-alias', n)
    if (spec.healthCmd) args.push('--health-cmd', spec.healthCmd)
    for (const [k, v] of spec.env)
      if (/[\r\n]/.test(v))
        problems.push(
          `${file}: services.${n}.environment: ${k} spans lines; an accessory's values take one line.`
        )
    accessories.push({
      name: n,
      image: d.image,
      network: d.networks === undefined ? network : undefined,
      args,
      env: spec.env,
      command: spec.command ?? []
    })
  }
  const spec = serviceSpec(web, webDef, root, env, dir, file, problems, app, 'app', engine)
  // engine swarm: the service's create arguments instead of docker run's, deploy: keys included
  if (engine === 'swarm')
    spec.runArgs = swarmArgs(spec.def, root, env, app, `${file}: services.${web}`, problems)
  // the web (and so its workers) joins the accessories' network, unless it names its own
  if (accessories.some((x) => x.network) && webDef.networks === undefined)
    spec.runArgs.unshift('--network', network)
  if (problems.length > 0) throw new ComposeError(problems)
  return {
    service: web,
    accessories,
    containerPort: spec.port,
    env: spec.env,
    runArgs: spec.runArgs,
    command: spec.command,
    healthCmd: spec.healthCmd,
    workers
  }
}

let validate: ReturnType<Ajv['compile']> | undefined

/**
 * What the Compose Specification's own JSON schema (src/vendor/compose-spec, draft-07) says is
 * wrong with the file, one line per place: an unknown key by name, else the first complaint.
 */
export function schemaProblems(doc: unknown): string[] {
  if (!validate) {
    // the schema uses keywords of later drafts (deprecated) and names its meta-schema without '#'
    const ajv = new Ajv({ strict: false, allErrors: true, validateSchema: false })
    validate = ajv.compile(composeSchema)
  }
  if (validate(doc)) return []
  const byPlace = new Map<string, string>()
  const where = (e: ErrorObject) =>
    e.instancePath.replace(/^\//, '').replace(/\//g, '.') || '(the top level)'
  for (const e of validate.errors ?? []) {
    if (e.keyword === 'additionalProperties') {
      const key = (e.params as { additionalProperty: string }).additionalProperty
      const at = e.instancePath ? `${where(e)}.${key}` : key
      byPlace.set(at, `${at} is not a key of the Compose Specification (a typo?)`)
    }
  }
  for (const e of validate.errors ?? []) {
    if (e.keyword === 'additionalProperties' || e.keyword === 'oneOf') continue
    const at = where(e)
    if (
      [...byPlace.keys()].some((k) => k === at || k.startsWith(`${at}.`) || at.startsWith(`${k}.`))
    )
      continue
    byPlace.set(at, `${at} ${e.message ?? 'is invalid'}`)
  }
  return [...byPlace.values()].slice(0, 10)
}
