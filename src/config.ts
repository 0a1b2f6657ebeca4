// Inputs (+ the optional YAML file) -> one typed, validated Config. The inputs are declared in
// config-inputs.ts, the file is read in config-file.ts, and each group of inputs is checked in
// config-build.ts or config-app.ts, all reporting to one collector (config-check.ts) so that a user
// sees every problem at once.
import { checkAfterSwitch, checkApp, checkEngine, checkRun, checkSwitch } from './config-app.js'
import { checkBuild, checkServer, checkVersion } from './config-build.js'
import { Collector } from './config-check.js'
import { checkFleet } from './config-hosts.js'
import { withConfigFile } from './config-file.js'
import { INPUT_NAMES, type Inputs } from './config-inputs.js'
import type { Config, ConfigContext } from './config-types.js'

export { ConfigError } from './config-check.js'
export type { Config, ConfigContext, JumpHost, SshTarget } from './config-types.js'
export { mergeInputs, parseConfigFile } from './config-file.js'
export {
  FILE_INPUTS,
  INPUT_NAMES,
  SECRET_INPUTS,
  SWITCH_MODES,
  type InputName,
  type Inputs,
  type SwitchMode
} from './config-inputs.js'
export { registryOf } from './config-build.js'

/** What the log says of the credential the servers got for their pull. */
export function pullCredentialNote(config: Pick<Config, 'pull' | 'registry'>): string {
  switch (config.pull.source) {
    case 'pull':
      return `The servers pull from ${config.registry} as ${config.pull.username} (pull-registry-username); they never get the push credential.`
    case 'push':
      return `The servers pull from ${config.registry} with the push credential (${config.pull.username}), as push-credential-to-servers says: each one holds it while its script runs.`
    case 'none':
      return `The servers pull from ${config.registry} anonymously: they get no registry credential (give a read-only one in pull-registry-username and pull-registry-password if the image is private).`
  }
}

/**
 * command-timeout: long enough for what the inputs let a script wait for (health, drain, watch),
 * so a slow but working deploy is never cut.
 */
function checkCommandTimeout(
  c: Collector,
  sw: Pick<Config, 'health' | 'drainTimeout'>,
  after: Config['after'],
  task: number
): number {
  const t = c.num('command-timeout', 10, 86400, false)
  const canary = after.canary.steps.length * after.canary.stepTime
  const needs = sw.health.timeout + sw.drainTimeout + after.watch + task + canary
  if (c.get('command-timeout') !== undefined && t <= needs)
    c.add(
      `Input 'command-timeout' is ${t} s, but a deploy may take health-timeout + drain-timeout + watch${task ? ' + pre-switch-timeout' : ''}${canary ? ' + the canary steps' : ''} = ${needs} s on the server: set it above ${needs}, or lower those.`
    )
  return c.get('command-timeout') !== undefined ? t : Math.max(t, needs + 60)
}

/** Read every input through `get` (core.getInput); empty means not given. */
export function readInputs(get: (name: string) => string): Inputs {
  const inputs: Inputs = {}
  for (const name of INPUT_NAMES) {
    const value = get(name)
    if (value !== '') inputs[name] = value
  }
  return inputs
}

/** Read inputs, merge the optional config file, and validate into one Config. */
export function loadConfig(explicit: Inputs, ctx: ConfigContext): Config {
  return parseConfig(withConfigFile(explicit, ctx.workspace), ctx)
}

/** Validate merged inputs. Every problem is collected, so a user fixes them in one go. */
export function parseConfig(inputs: Inputs, ctx: ConfigContext): Config {
  const c = new Collector(inputs, ctx.unquoted)
  const build = checkBuild(c)
  const version = checkVersion(c)
  const { ssh, hosts, lb } = checkServer(c, ctx.agent)
  const app = checkApp(c, ctx)
  const sw = checkSwitch(c, app)
  const after = checkAfterSwitch(c)
  const fleet = checkFleet(c, { hosts, lb, mode: sw.switch.mode, network: app.network, after })
  const run = checkRun(c)
  const commandTimeout = checkCommandTimeout(c, sw, after, app.task?.timeout ?? 0)
  const engine = checkEngine(c, {
    several: fleet.several,
    mode: sw.switch.mode,
    runArgs: app.dockerRunArgs,
    maxParallel: fleet.maxParallel,
    keepWarm: after.keepWarm,
    canary: after.canary.steps.length > 0,
    compose: c.get('compose-file') !== undefined,
    envKeys: app.env.map(([k]) => k)
  })
  if (app.accessories.length > 0 && (hosts.length > 1 || lb))
    c.add(
      `Input 'compose-file': its service(s) ${app.accessories.map((x) => x.name).join(', ')} (other images: a database, a cache) run on one server, and bg-deploy starts them with one server only for now. Run them yourself and leave them out of the file, or deploy to one server.`
    )
  // compose-file's healthcheck, unless health-cmd says otherwise
  if (!engine.healthCmd && app.composeHealthCmd) engine.healthCmd = app.composeHealthCmd
  c.done()
  return {
    ...build,
    ...version,
    ssh,
    hosts,
    lb,
    fleet,
    after,
    engine,
    app,
    ...sw,
    ...run,
    commandTimeout
  }
}
