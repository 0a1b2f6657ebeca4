// Inputs (+ the optional YAML file) -> one typed, validated Config. The inputs are declared in
// config-inputs.ts, the file is read in config-file.ts, and each group of inputs is checked in
// config-build.ts or config-app.ts, all reporting to one collector (config-check.ts) so that a user
// sees every problem at once.
import { checkAfterSwitch, checkApp, checkEngine, checkRun, checkSwitch } from './config-app.js'
import { checkBuild, checkServer, checkVersion } from './config-build.js'
import { Collector } from './config-check.js'
import { checkFleet } from './config-hosts.js'
import { withConfigFile } from './config-file.js'
import {
  INPUT_NAMES,
  type Engine,
  type InputName,
  type Inputs,
  type SwitchMode
} from './config-inputs.js'
import type { HostKeyPin } from './hostkey.js'

export { ConfigError } from './config-check.js'
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

export interface Config {
  /** the image repository, without a tag or digest */
  image: string
  /**
   * build: false: the image pushed already, as a reference in `image`: ':tag', '@sha256:…' or
   * ':tag@sha256:…' (undefined: the run builds and pushes the image itself)
   */
  prebuilt?: string
  registry: string
  context: string
  dockerfile: string
  buildArgs: string[]
  registryUsername?: string
  registryPassword?: string
  /**
   * what the servers log in with to pull: the pull credential (source pull), the push one when
   * push-credential-to-servers says so (source push), or nothing: an anonymous pull (source none)
   */
  pull: { username?: string; password?: string; source: 'pull' | 'push' | 'none' }
  version?: string
  versionPattern: RegExp
  githubToken?: string
  createRelease: boolean
  /** a server: where, as whom, its pinned host key; and how it is reached */
  ssh: SshTarget & {
    /** seconds until the SSH connection must be ready (TCP, handshake, authentication) */
    connectTimeout: number
    /** proxy-jump: the bastion the connection goes through (ssh -J) */
    jump?: JumpHost
  }
  /** seconds a server's script may run (from its start, or from the image pushed) before the run closes its connection */
  commandTimeout: number
  app: {
    name: string
    containerPort: number
    bluePort: number
    greenPort: number
    network?: string
    env: [string, string][]
    envFile?: string
    dockerRunArgs: string[]
  }
  health: { path: string; timeout: number; interval: number }
  drainTimeout: number
  nginx: { upstreamFile: string; upstreamName: string; testCommand: string; reloadCommand: string }
  /** reload: nginx reload per switch; dnat: nginx points at livePort, a NAT rule picks the color */
  switch: { mode: SwitchMode; livePort: number }
  rollback?: string
  /**
   * watch: seconds the new color is watched after the switch, the old one warm (0: off);
   * keepWarm: seconds the old color keeps running after a deploy (0: stopped at once)
   */
  after: { watch: number; maxErrorRate: number; maxHealthFailures: number; keepWarm: number }
  /** ssh: blue-green over SSH; swarm: a Docker Swarm service on the manager in `host` */
  engine: { kind: Engine; replicas: number; healthCmd?: string; parallelism: number }
  /** every server (the first is `ssh`); the load balancer in front of them, if any */
  hosts: Config['ssh'][]
  lb?: Config['ssh']
  fleet: {
    /** where the app servers publish the colors' ports */
    bindAddress: string
    /** how many servers prepare at once (0: all) */
    maxParallel: number
    /** false: prepare and preview, then stop; a later run switches */
    promote: boolean
    previewFile?: string
    /** the run goes in two phases (prepare, then commit): several servers, a load balancer, previews, or promote: false */
    several: boolean
  }
}

/** An SSH endpoint: its address, the user and key to log in with, its pinned host key. */
export interface SshTarget {
  host: string
  port: number
  username: string
  privateKey: string
  passphrase?: string
  hostKeyPins: HostKeyPin[]
  insecureIgnoreHostKey: boolean
}

/** A bastion (proxy-jump): its own address, user, key and pinned host key. */
export type JumpHost = SshTarget

/**
 * command-timeout: long enough for what the inputs let a script wait for (health, drain, watch),
 * so a slow but working deploy is never cut.
 */
function checkCommandTimeout(
  c: Collector,
  sw: Pick<Config, 'health' | 'drainTimeout'>,
  after: Config['after']
): number {
  const t = c.num('command-timeout', 10, 86400, false)
  const needs = sw.health.timeout + sw.drainTimeout + after.watch
  if (c.get('command-timeout') !== undefined && t <= needs)
    c.add(
      `Input 'command-timeout' is ${t} s, but a deploy may take health-timeout + drain-timeout + watch = ${needs} s on the server: set it above ${needs}, or lower those.`
    )
  return c.get('command-timeout') !== undefined ? t : Math.max(t, needs + 60)
}

/** What the run's context supplies to defaults. */
export interface ConfigContext {
  /** owner/repo */
  repository: string
  workspace: string
  /** inputs no message may quote besides the secrets (the command line's values read from files) */
  unquoted?: readonly InputName[]
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
  const { ssh, hosts, lb } = checkServer(c)
  const app = checkApp(c, ctx)
  const sw = checkSwitch(c, app)
  const after = checkAfterSwitch(c)
  const fleet = checkFleet(c, { hosts, lb, mode: sw.switch.mode, network: app.network, after })
  const run = checkRun(c)
  const commandTimeout = checkCommandTimeout(c, sw, after)
  const engine = checkEngine(c, {
    several: fleet.several,
    mode: sw.switch.mode,
    runArgs: app.dockerRunArgs,
    maxParallel: fleet.maxParallel,
    keepWarm: after.keepWarm,
    envKeys: app.env.map(([k]) => k)
  })
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
