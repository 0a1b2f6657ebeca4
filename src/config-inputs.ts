// The action's inputs, declared once: name (as in action.yml), group, whether it is secret, and
// its default where the default is a plain value. INPUT_NAMES, SECRET_INPUTS and the defaults the
// validators use come from this table; docs/inputs.md's reference is generated from it and action.yml's
// descriptions (scripts/docs-inputs.mjs); __tests__/contract.test.ts holds action.yml, that page and README's short table to it.

export const SWITCH_MODES = ['reload', 'dnat'] as const
export type SwitchMode = (typeof SWITCH_MODES)[number]
export const ENGINES = ['ssh', 'swarm'] as const
export type Engine = (typeof ENGINES)[number]

export type Group = 'build' | 'version' | 'server' | 'app' | 'switch' | 'run'

interface InputSpec {
  group: Group
  /** masked before anything is logged, never read from the config file, never quoted */
  secret?: true
  /** the default, where it is a plain value (others are derived: see config.ts) */
  default?: string
  /** a value of several lines (a list, keys, env): the command line may read it from @FILE */
  lines?: true
  /** true or false: the command line takes `--NAME` alone as true and `--no-NAME` as false */
  flag?: true
}

export const INPUTS = {
  image: { group: 'build' },
  build: { group: 'build', default: 'true', flag: true },
  context: { group: 'build', default: '.' },
  dockerfile: { group: 'build' },
  'build-args': { group: 'build', lines: true },
  registry: { group: 'build' },
  'registry-username': { group: 'build' },
  'registry-password': { group: 'build', secret: true },
  'pull-registry-username': { group: 'build' },
  'pull-registry-password': { group: 'build', secret: true },
  'push-credential-to-servers': { group: 'build', default: 'false', flag: true },
  version: { group: 'version' },
  'version-pattern': { group: 'version' },
  'github-token': { group: 'version', secret: true },
  'create-release': { group: 'version', default: 'true', flag: true },
  host: { group: 'server' },
  hosts: { group: 'server', lines: true },
  'lb-host': { group: 'server' },
  port: { group: 'server', default: '22' },
  username: { group: 'server' },
  'ssh-key': { group: 'server', secret: true },
  'ssh-passphrase': { group: 'server', secret: true },
  'host-fingerprint': { group: 'server', lines: true },
  'known-hosts': { group: 'server', lines: true },
  'insecure-ignore-host-key': { group: 'server', default: 'false', flag: true },
  'proxy-jump': { group: 'server' },
  'proxy-jump-key': { group: 'server', secret: true },
  'proxy-jump-fingerprint': { group: 'server' },
  'connect-timeout': { group: 'server', default: '20' },
  'command-timeout': { group: 'server', default: '1800' },
  'app-name': { group: 'app' },
  'container-port': { group: 'app', default: '8080' },
  'blue-port': { group: 'app', default: '8081' },
  'green-port': { group: 'app', default: '8082' },
  network: { group: 'app' },
  env: { group: 'app', lines: true, secret: true },
  'env-file': { group: 'app' },
  'docker-run-args': { group: 'app' },
  'compose-file': { group: 'app' },
  'compose-service': { group: 'app' },
  workers: { group: 'app', lines: true },
  'pre-switch-command': { group: 'app' },
  'pre-switch-timeout': { group: 'app', default: '300' },
  'pre-switch-force': { group: 'app', default: 'false', flag: true },
  'pre-switch-host': { group: 'server' },
  'health-path': { group: 'switch', default: '/' },
  'health-timeout': { group: 'switch', default: '60' },
  'health-interval': { group: 'switch', default: '0.05' },
  'drain-timeout': { group: 'switch', default: '30' },
  'nginx-upstream-file': { group: 'switch' },
  'nginx-upstream-name': { group: 'switch' },
  'nginx-test-command': { group: 'switch', default: 'nginx -t' },
  'nginx-reload-command': { group: 'switch', default: 'nginx -s reload' },
  'switch-mode': { group: 'switch', default: 'reload' },
  'live-port': { group: 'switch', default: '8083' },
  'bind-address': { group: 'server', default: '127.0.0.1' },
  'max-parallel': { group: 'server', default: '0' },
  'nginx-preview-file': { group: 'switch' },
  'preview-allow': { group: 'switch' },
  watch: { group: 'switch', default: '0' },
  'watch-max-error-rate': { group: 'switch', default: '1' },
  'watch-max-health-failures': { group: 'switch', default: '3' },
  'watch-health-only': { group: 'switch', default: 'false', flag: true },
  canary: { group: 'switch' },
  'canary-step-time': { group: 'switch', default: '60' },
  'canary-key': { group: 'switch', default: '$remote_addr' },
  'keep-warm': { group: 'switch', default: '0' },
  promote: { group: 'run', default: 'true', flag: true },
  engine: { group: 'server', default: 'ssh' },
  replicas: { group: 'app', default: '2' },
  'health-cmd': { group: 'switch' },
  rollback: { group: 'run' },
  url: { group: 'run' },
  'deployment-environment': { group: 'run' },
  'notify-url': { group: 'run', secret: true },
  config: { group: 'run' }
} as const satisfies Record<string, InputSpec>

export type InputName = keyof typeof INPUTS
export type Inputs = Partial<Record<InputName, string>>

/** The action's inputs, exactly as named in action.yml. */
export const INPUT_NAMES = Object.keys(INPUTS) as InputName[]

/** Inputs that hold secrets: masked before anything is logged, and never read from the config file. */
export const SECRET_INPUTS: readonly InputName[] = INPUT_NAMES.filter(
  (n) => (INPUTS[n] as InputSpec).secret
)

/**
 * Inputs the command line reads from @FILE: the secrets and the values of several lines. Any other
 * is one short word, and @ there is most likely a slip that would read (and quote) a file.
 */
export const FILE_INPUTS: readonly InputName[] = INPUT_NAMES.filter(
  (n) => (INPUTS[n] as InputSpec).secret || (INPUTS[n] as InputSpec).lines
)

/** Inputs that are true or false: the command line's `--NAME` (true) and `--no-NAME` (false). */
export const FLAG_INPUTS: readonly InputName[] = INPUT_NAMES.filter(
  (n) => (INPUTS[n] as InputSpec).flag
)

/** The group an input belongs to (the command line's help lists the flags by group). */
export function groupOf(name: InputName): Group {
  return (INPUTS[name] as InputSpec).group
}

/** The plain default of an input ('' when it has none or it is derived). */
export function defaultOf(name: InputName): string {
  return (INPUTS[name] as InputSpec).default ?? ''
}
