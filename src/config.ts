import { readFileSync } from 'node:fs'
import path from 'node:path'
import { parseDocument, isMap, isScalar, isSeq } from 'yaml'
import { DEFAULT_VERSION_PATTERN, versionProblem } from './version.js'
import { splitLines, splitWords } from './words.js'
import { parseDotenv } from './dotenv.js'
import { parseHostKeyPins, type HostKeyPin } from './hostkey.js'

/** The action's inputs, exactly as named in action.yml. */
export const INPUT_NAMES = [
  'image',
  'context',
  'dockerfile',
  'build-args',
  'registry',
  'registry-username',
  'registry-password',
  'pull-registry-username',
  'pull-registry-password',
  'version',
  'version-pattern',
  'github-token',
  'create-release',
  'host',
  'port',
  'username',
  'ssh-key',
  'ssh-passphrase',
  'host-fingerprint',
  'known-hosts',
  'insecure-ignore-host-key',
  'app-name',
  'container-port',
  'blue-port',
  'green-port',
  'network',
  'env',
  'env-file',
  'docker-run-args',
  'health-path',
  'health-timeout',
  'health-interval',
  'drain-timeout',
  'nginx-upstream-file',
  'nginx-upstream-name',
  'nginx-test-command',
  'nginx-reload-command',
  'switch-mode',
  'live-port',
  'rollback',
  'config'
] as const
export type InputName = (typeof INPUT_NAMES)[number]
export type Inputs = Partial<Record<InputName, string>>

/** Inputs that hold secrets: masked before anything is logged, and never read from the config file. */
export const SECRET_INPUTS: readonly InputName[] = [
  'registry-password',
  'pull-registry-password',
  'github-token',
  'ssh-key',
  'ssh-passphrase',
  'env'
]

export interface Config {
  image: string
  registry: string
  context: string
  dockerfile: string
  buildArgs: string[]
  registryUsername?: string
  registryPassword?: string
  /** what the server logs in with to pull: the pull credential when given, else the push one */
  pull: { username?: string; password?: string }
  version?: string
  versionPattern: RegExp
  githubToken?: string
  createRelease: boolean
  ssh: {
    host: string
    port: number
    username: string
    privateKey: string
    passphrase?: string
    hostKeyPins: HostKeyPin[]
    insecureIgnoreHostKey: boolean
  }
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
}

export const SWITCH_MODES = ['reload', 'dnat'] as const
export type SwitchMode = (typeof SWITCH_MODES)[number]

/** What the run's context supplies to defaults. */
export interface ConfigContext {
  /** owner/repo */
  repository: string
  workspace: string
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(
      problems.length === 1
        ? problems[0]
        : `${problems.length} inputs are invalid:\n${problems.map((p) => `- ${p}`).join('\n')}`
    )
    this.name = 'ConfigError'
  }
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

/** Parse the YAML config file into inputs. Errors give the file, line and column. */
export function parseConfigFile(text: string, file: string): Inputs {
  const doc = parseDocument(text, { prettyErrors: false, uniqueKeys: true })
  if (doc.errors.length > 0) {
    const e = doc.errors[0]!
    throw new ConfigError([
      `config file ${file}${lineOf(text, e.pos[0])}: ${e.message.split('\n')[0]}`
    ])
  }
  if (doc.contents === null) return {}
  if (!isMap(doc.contents))
    throw new ConfigError([`config file ${file}: expected a mapping of input names to values`])
  const inputs: Inputs = {}
  const problems: string[] = []
  for (const pair of doc.contents.items) {
    const key = isScalar(pair.key) ? String(pair.key.value) : String(pair.key)
    const line = lineOf(text, (pair.key as { range?: number[] } | null)?.range?.[0])
    const at = `config file ${file}${line}`
    if (!(INPUT_NAMES as readonly string[]).includes(key)) {
      problems.push(`${at}: unknown input '${key}'. Expected one of the inputs in action.yml.`)
      continue
    }
    const name = key as InputName
    if (SECRET_INPUTS.includes(name) || name === 'config') {
      problems.push(
        name === 'config'
          ? `${at}: 'config' cannot be set inside the config file.`
          : `${at}: '${name}' is a secret and must not be committed in a file; pass it as an input from \${{ secrets.* }}.`
      )
      continue
    }
    const value = pair.value
    if (isScalar(value)) {
      if (value.value !== null) inputs[name] = String(value.value)
    } else if (isSeq(value)) {
      inputs[name] = value.items.map((v) => String(isScalar(v) ? v.value : v)).join('\n')
    } else if (isMap(value) && name === 'build-args') {
      inputs[name] = value.items
        .map(
          (p) =>
            `${String(isScalar(p.key) ? p.key.value : p.key)}=${String(isScalar(p.value) ? p.value.value : p.value)}`
        )
        .join('\n')
    } else if (value !== null) {
      problems.push(`${at}: '${name}' must be a string, number, boolean or list.`)
    }
  }
  if (problems.length > 0) throw new ConfigError(problems)
  return inputs
}

function lineOf(text: string, offset: number | undefined): string {
  if (offset === undefined) return ''
  const before = text.slice(0, offset).split('\n')
  return `:${before.length}:${before[before.length - 1]!.length + 1}`
}

/** Inputs given to the step win over the file. */
export function mergeInputs(fromFile: Inputs, explicit: Inputs): Inputs {
  return { ...fromFile, ...explicit }
}

/** Read inputs, merge the optional config file, and validate into one Config. */
export function loadConfig(explicit: Inputs, ctx: ConfigContext): Config {
  let inputs = explicit
  if (explicit.config) {
    const file = path.resolve(ctx.workspace, explicit.config)
    let text: string
    try {
      text = readFileSync(file, 'utf8')
    } catch (e) {
      throw new ConfigError([
        `Input 'config': cannot read '${explicit.config}' (${(e as NodeJS.ErrnoException).code ?? e}). Expected a YAML file path relative to the workspace.`
      ])
    }
    inputs = mergeInputs(parseConfigFile(text, explicit.config), explicit)
  }
  return parseConfig(inputs, ctx)
}

// Docker reference grammar (distribution/reference), repository part only.
const PATH_COMPONENT = '[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*'
const DOMAIN =
  '(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?'
const REPOSITORY = new RegExp(`^(?:${DOMAIN}/)?${PATH_COMPONENT}(?:/${PATH_COMPONENT})*$`)
const NAME = /^[a-z0-9][a-z0-9_.-]{0,62}$/
const NETWORK = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$/
const UPSTREAM_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/
const HOST = /^[A-Za-z0-9_.:[\]-]+$/
/** Inputs whose value no message quotes: the secrets, and those that can embed one. */
const UNQUOTED_INPUTS: readonly InputName[] = [...SECRET_INPUTS, 'build-args', 'docker-run-args']
/**
 * Variables that bash and the docker CLI on the server read themselves: a value that spans lines
 * reaches `docker run` through the CLI's environment, where these would change the CLI.
 */
const CLI_VARIABLES =
  /^(PATH|HOME|IFS|ENV|TMPDIR|SHELLOPTS|BASHOPTS|BASH_.*|LD_.*|DOCKER_.*|(HTTPS?|NO|ALL)_PROXY)$/i
const USER = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/

/** The registry host of an image repository, as Docker decides it. */
export function registryOf(image: string): string {
  const slash = image.indexOf('/')
  if (slash < 0) return 'docker.io'
  const first = image.slice(0, slash)
  return first.includes('.') || first.includes(':') || first === 'localhost' ? first : 'docker.io'
}

/** Validate merged inputs. Every problem is collected, so a user fixes them in one go. */
export function parseConfig(inputs: Inputs, ctx: ConfigContext): Config {
  const problems: string[] = []
  const bad = (name: InputName, expected: string): undefined => {
    // a value is quoted whole or not at all: a cut-off secret would be printed unmasked (GitHub
    // masks a secret only whole), and these inputs can hold one
    const shown = UNQUOTED_INPUTS.includes(name) ? '' : ` '${inputs[name] ?? ''}'`
    problems.push(`Invalid ${name}${shown}. Expected ${expected}.`)
    return undefined
  }
  const missing = (name: InputName, hint: string): undefined => {
    problems.push(`Input '${name}' is required: ${hint}.`)
    return undefined
  }
  const get = (name: InputName): string | undefined => {
    const v = inputs[name]
    return v === undefined || v.trim() === '' ? undefined : v
  }
  const text = (
    name: InputName,
    fallback: string,
    ok: (v: string) => boolean,
    expected: string
  ): string => {
    const v = get(name)?.trim()
    if (v === undefined) return fallback
    if (v.includes('\0') || !ok(v)) return bad(name, expected) ?? fallback
    return v
  }
  const bool = (name: InputName, fallback: boolean): boolean => {
    const v = get(name)?.trim()
    if (v === undefined) return fallback
    if (/^(true|True|TRUE)$/.test(v)) return true
    if (/^(false|False|FALSE)$/.test(v)) return false
    return bad(name, 'true or false') ?? fallback
  }
  const num = (
    name: InputName,
    fallback: number,
    min: number,
    max: number,
    integer: boolean
  ): number => {
    const v = get(name)?.trim()
    if (v === undefined) return fallback
    const n = Number(v)
    const shape = integer ? /^\d+$/ : /^\d+(\.\d+)?$|^\.\d+$/
    if (!shape.test(v) || n < min || n > max)
      return (
        bad(name, `${integer ? 'a whole number' : 'a number'} from ${min} to ${max}`) ?? fallback
      )
    return n
  }
  const port = (name: InputName, fallback: number) => num(name, fallback, 1, 65535, true)
  const noControl = (v: string) => !/[\0-\x1f\x7f]/.test(v)

  // build
  const imageRaw = get('image')?.trim()
  let image = ''
  if (imageRaw === undefined)
    missing('image', 'the image repository without a tag, e.g. ghcr.io/acme/shop')
  else if (/@/.test(imageRaw) || /:[^/]*$/.test(imageRaw.replace(/^[^/]*\//, '')))
    bad(
      'image',
      'a repository without a tag or digest, e.g. ghcr.io/acme/shop (the action adds the version and latest tags)'
    )
  else if (!REPOSITORY.test(imageRaw))
    bad(
      'image',
      'a lowercase image repository such as ghcr.io/acme/shop or registry.example.com:5000/team/app'
    )
  else image = imageRaw
  const registry = text(
    'registry',
    image ? registryOf(image) : '',
    (v) => HOST.test(v) && !v.startsWith('-'),
    'a registry host such as ghcr.io or registry.example.com:5000'
  )
  const context = text('context', '.', noControl, 'a directory path relative to the workspace')
  const dockerfile = text(
    'dockerfile',
    path.join(context, 'Dockerfile'),
    noControl,
    'a file path relative to the workspace'
  )
  const buildArgs = splitLines(get('build-args') ?? '')
  if (buildArgs.some((l) => !/^[A-Za-z_][A-Za-z0-9_]*=/.test(l)))
    bad('build-args', 'one KEY=VALUE per line, KEY made of letters, digits and _')
  const registryUsername =
    text(
      'registry-username',
      '',
      (v) => !/[\s\0-\x1f\x7f]/.test(v),
      'a user name without spaces or control characters'
    ) || undefined
  const registryPassword = get('registry-password')
  if ((registryUsername === undefined) !== (registryPassword === undefined))
    problems.push(
      `Inputs 'registry-username' and 'registry-password' go together: give both to log in to ${registry || 'the registry'}, or neither.`
    )
  const pullUsername =
    text(
      'pull-registry-username',
      '',
      (v) => !/[\s\0-\x1f\x7f]/.test(v),
      'a user name without spaces or control characters'
    ) || undefined
  const pullPassword = get('pull-registry-password')
  if ((pullUsername === undefined) !== (pullPassword === undefined))
    problems.push(
      `Inputs 'pull-registry-username' and 'pull-registry-password' go together: give both for the server's pull from ${registry || 'the registry'}, or neither.`
    )

  // version
  const version =
    text(
      'version',
      '',
      (v) => !versionProblem(v),
      'a version such as v1.2.3: letters, digits and . _ - +, not starting with . or -'
    ) || undefined
  let versionPattern = DEFAULT_VERSION_PATTERN
  const patternRaw = get('version-pattern')
  if (patternRaw !== undefined) {
    try {
      versionPattern = new RegExp(patternRaw)
    } catch (e) {
      bad('version-pattern', `a JavaScript regular expression (${(e as Error).message})`)
    }
  }
  const createRelease = bool('create-release', true)

  // server
  const host = get('host')?.trim()
  if (host === undefined)
    missing('host', 'the server to deploy to, e.g. ${{ secrets.DEPLOY_HOST }}')
  else if (!HOST.test(host) || host.startsWith('-')) bad('host', 'a host name or IP address')
  const sshPort = port('port', 22)
  const username = get('username')?.trim()
  if (username === undefined) missing('username', 'the SSH user on the server, e.g. deploy')
  else if (!USER.test(username))
    bad('username', 'a user name of letters, digits, _ . and -, not starting with -')
  const privateKey = get('ssh-key')
  if (privateKey === undefined)
    missing('ssh-key', 'the private key, e.g. ${{ secrets.DEPLOY_KEY }}')
  else if (/-----BEGIN (ENCRYPTED )?PRIVATE KEY-----/.test(privateKey))
    bad(
      'ssh-key',
      'an OpenSSH or PEM private key; this is a PKCS#8 key, which is not supported. Convert it with: ssh-keygen -p -f KEYFILE (it is rewritten in OpenSSH format)'
    )
  else if (!/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(privateKey))
    bad(
      'ssh-key',
      'the text of a private key starting with -----BEGIN OPENSSH PRIVATE KEY----- (not a path or a public key)'
    )
  const passphrase = get('ssh-passphrase')
  let hostKeyPins: HostKeyPin[] = []
  try {
    hostKeyPins = parseHostKeyPins(get('host-fingerprint'), get('known-hosts'), host ?? '', sshPort)
  } catch (e) {
    problems.push((e as Error).message)
  }
  const insecureIgnoreHostKey = bool('insecure-ignore-host-key', false)
  if (
    hostKeyPins.length === 0 &&
    !insecureIgnoreHostKey &&
    get('host-fingerprint') === undefined &&
    get('known-hosts') === undefined
  )
    problems.push(
      "The server's host key is not pinned: set 'host-fingerprint' to the output of `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` run on the server (or 'known-hosts' to the output of `ssh-keyscan HOST`), or set 'insecure-ignore-host-key: true' to skip the check."
    )

  // app
  const repoName = (ctx.repository.split('/')[1] ?? '')
    .toLowerCase()
    .replace(/[^a-z0-9_.-]/g, '-')
    .replace(/^[^a-z0-9]+/, '')
  const appRaw = get('app-name')?.trim()
  let appName = appRaw ?? repoName
  if (!NAME.test(appName)) {
    if (appRaw === undefined)
      missing(
        'app-name',
        `the repository name '${repoName}' cannot be used as one; give app-name, e.g. shop`
      )
    else
      bad(
        'app-name',
        'a lowercase name of up to 63 letters, digits, _ . and -, starting with a letter or digit'
      )
    appName = 'app'
  }
  const containerPort = port('container-port', 8080)
  const bluePort = port('blue-port', 8081)
  const greenPort = port('green-port', 8082)
  if (bluePort === greenPort)
    problems.push(`Inputs 'blue-port' and 'green-port' must differ (both are ${bluePort}).`)
  const network =
    text(
      'network',
      '',
      (v) => NETWORK.test(v),
      'a Docker network name of letters, digits, _ . and -'
    ) || undefined
  const dotenv = parseDotenv(get('env') ?? '')
  for (const p of dotenv.problems)
    problems.push(`Invalid env line ${p.line}: ${p.why}. (No part of it is shown: env is secret.)`)
  const env = dotenv.entries
  const spanningLines = env.filter(([k, v]) => /[\r\n]/.test(v) && CLI_VARIABLES.test(k))
  if (spanningLines.length > 0)
    problems.push(
      `Invalid env: a value that spans lines reaches docker through its environment on the server, so it cannot be given to ${spanningLines.map(([k]) => k).join(', ')} (a variable the docker CLI or bash read). Use another name, or a value on one line.`
    )
  const envFile =
    text(
      'env-file',
      '',
      (v) => v.startsWith('/') && noControl(v),
      'an absolute path on the server'
    ) || undefined
  let dockerRunArgs: string[] = []
  const runArgsRaw = get('docker-run-args')
  if (runArgsRaw !== undefined) {
    if (runArgsRaw.includes('\0')) bad('docker-run-args', 'arguments without NUL characters')
    else
      try {
        dockerRunArgs = splitWords(runArgsRaw)
      } catch (e) {
        bad('docker-run-args', `arguments quoted like a shell would (${(e as Error).message})`)
      }
  }

  // health and switch
  const healthPath = text(
    'health-path',
    '/',
    (v) => v.startsWith('/') && !/[\s\0-\x1f\x7f]/.test(v),
    'a URL path starting with / and without spaces'
  )
  const healthTimeout = num('health-timeout', 60, 1, 3600, false)
  const healthInterval = num('health-interval', 0.1, 0.05, 60, false)
  const drainTimeout = num('drain-timeout', 30, 0, 3600, false)
  const upstreamFile = text(
    'nginx-upstream-file',
    `/etc/nginx/conf.d/${appName}-upstream.conf`,
    (v) => v.startsWith('/') && !v.endsWith('/') && noControl(v),
    'an absolute file path on the server'
  )
  const upstreamName = text(
    'nginx-upstream-name',
    appName,
    (v) => UPSTREAM_NAME.test(v),
    'an nginx upstream name of letters, digits, _ . and -'
  )
  const testCommand = text('nginx-test-command', 'nginx -t', noControl, 'a one-line command')
  const reloadCommand = text(
    'nginx-reload-command',
    'nginx -s reload',
    noControl,
    'a one-line command'
  )

  const switchModeRaw = get('switch-mode')?.trim()
  let switchMode: SwitchMode = 'reload'
  if (switchModeRaw !== undefined) {
    if ((SWITCH_MODES as readonly string[]).includes(switchModeRaw))
      switchMode = switchModeRaw as SwitchMode
    else
      bad(
        'switch-mode',
        'reload (nginx is reloaded at each switch) or dnat (nginx points at live-port and a NAT rule on the server picks the color; needs root or sudo there)'
      )
  }
  const livePort = port('live-port', 8083)
  if (switchMode === 'dnat') {
    if (livePort === bluePort || livePort === greenPort)
      problems.push(
        `Input 'live-port' (${livePort}) must differ from blue-port and green-port: it is the stable port nginx uses in switch-mode dnat.`
      )
    if (network)
      problems.push(
        "Inputs 'switch-mode: dnat' and 'network' do not go together: dnat redirects loopback traffic of the server's own nginx, while with 'network' nginx reaches the containers by name. Use switch-mode reload with network."
      )
  }

  const rollback =
    text(
      'rollback',
      '',
      (v) => v === 'previous' || !versionProblem(v),
      "empty, 'previous', or a version such as v1.3.2"
    ) || undefined

  if (problems.length > 0) throw new ConfigError(problems)
  return {
    image,
    registry,
    context,
    dockerfile,
    buildArgs,
    registryUsername,
    registryPassword,
    pull: pullUsername
      ? { username: pullUsername, password: pullPassword }
      : { username: registryUsername, password: registryPassword },
    version,
    versionPattern,
    githubToken: get('github-token')?.trim(),
    createRelease,
    ssh: {
      host: host!,
      port: sshPort,
      username: username!,
      privateKey: privateKey!,
      passphrase,
      hostKeyPins,
      insecureIgnoreHostKey
    },
    app: {
      name: appName,
      containerPort,
      bluePort,
      greenPort,
      network,
      env,
      envFile,
      dockerRunArgs
    },
    health: { path: healthPath, timeout: healthTimeout, interval: healthInterval },
    drainTimeout,
    nginx: { upstreamFile, upstreamName, testCommand, reloadCommand },
    switch: { mode: switchMode, livePort },
    rollback
  }
}
