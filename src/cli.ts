// The command line for operators: `npx bg-deploy deploy|rollback|status`, with the action's inputs
// as flags (or the same config file), running the same code as the action. A rollback or a look at
// what serves works while GitHub Actions is down.
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { hostname, userInfo } from 'node:os'
import { parse as parseYaml } from 'yaml'
import { FILE_INPUTS, INPUT_NAMES, loadConfig, readInputs, type InputName } from './config.js'
import { FLAG_INPUTS, defaultOf, groupOf, type Group } from './config-inputs.js'
import pkg from '../package.json' with { type: 'json' }
import type { RunContext } from './context.js'
import type { Outcome } from './run.js'
import { serverName } from './fleet.js'
import { sanitizeForeign } from './foreign.js'
import { run } from './main.js'
import { readChecks, readStatus, type CheckLine } from './remote/session.js'
import { connectSsh } from './ssh.js'

const COMMANDS = ['deploy', 'rollback', 'status', 'check'] as const
type Command = (typeof COMMANDS)[number]

export const USAGE = `Usage: bg-deploy <command> [--<input> <value>]... [--json]

Commands:
  deploy              build, push, release and switch, as the action does on a push
  rollback [VERSION]  switch back to VERSION (default: previous), building nothing
  status              what serves on each server, and its last deploys
  check               is each server ready for a first deploy? each line ok, or the fix

Every input of the action is a flag of the same name (--host, --ssh-key, --config, ...), or an
environment variable BG_DEPLOY_<NAME> (BG_DEPLOY_SSH_KEY); a flag wins. A value @FILE is read from
FILE (--ssh-key @~/.ssh/deploy_key). --config FILE reads the same YAML file as the action.
--repository OWNER/REPO names the GitHub repository (default: the origin remote's); the release is
made with --github-token or GITHUB_TOKEN. A true-or-false flag alone is true (--promote), and
--no-<flag> is false. --json prints the result as one JSON object on stdout (the log on stderr).

bg-deploy <command> --help lists its flags; bg-deploy --version prints the version.`

const COMMAND_HELP: Record<Command, string> = {
  deploy: `Usage: bg-deploy deploy [--<input> <value>]... [--json]

Builds the committed HEAD (refused with uncommitted changes; --build false deploys an image
pushed before), pushes it, makes the release and switches the servers, as the action does on a
push.`,
  rollback: `Usage: bg-deploy rollback [VERSION] [--<input> <value>]... [--json]

Switches back to VERSION (default: previous, the last version that served before this one),
building nothing: the kept container, or the image from the registry, with the run spec it ran
with.`,
  check: `Usage: bg-deploy check [--<input> <value>]... [--json]

Checks each server before a first deploy, changing nothing: SSH and its host key, Docker for the
user, live-restore, the proxy setting the switch mode needs, nginx (its test, the reload rule for
sudo, the upstream file writable and included, a site proxying to it), the ports, disk and the
state directory. Each line is ok, or says the exact fix. Exit 1 when one fails.`,
  status: `Usage: bg-deploy status [--<input> <value>]... [--json]

Prints what serves on each server (version and color) and its last deploys. Needs only the
server flags (--host or --hosts, --username, --ssh-key, the host key).`
}

const GROUP_TITLES: Record<Group, string> = {
  build: 'Image and registry',
  version: 'Version and release',
  server: 'Servers and SSH',
  app: 'The app',
  switch: 'Switch, watch and canary',
  run: 'Run'
}

/** A command's help: what it does, then its flags by group, with defaults and what they mean. */
export function commandHelp(command: Command, descriptions: Record<string, string> = {}): string {
  const names: readonly InputName[] =
    command === 'status' || command === 'check'
      ? INPUT_NAMES.filter((n) => groupOf(n) === 'server' || ['config', 'app-name'].includes(n))
      : INPUT_NAMES
  const lines = [COMMAND_HELP[command], '']
  for (const group of Object.keys(GROUP_TITLES) as Group[]) {
    const inGroup = names.filter((n) => groupOf(n) === group)
    if (inGroup.length === 0) continue
    lines.push(`${GROUP_TITLES[group]}:`)
    for (const n of inGroup) {
      const d = defaultOf(n)
      const flag = FLAG_INPUTS.includes(n) ? `--${n}, --no-${n}` : `--${n} VALUE`
      const said = descriptions[n]?.replace(/\s+/g, ' ').trim()
      lines.push(`  ${flag}${d ? ` (default: ${d})` : ''}`)
      if (said) lines.push(...wrap(said, 92).map((l) => `      ${l}`))
    }
    lines.push('')
  }
  lines.push(`  --repository OWNER/REPO, --json, --help`)
  lines.push('', 'All inputs, with their details: docs/inputs.md.')
  return lines.join('\n')
}

/** Words of TEXT in lines of at most WIDTH characters. */
function wrap(text: string, width: number): string[] {
  const out: string[] = []
  let line = ''
  for (const w of text.split(' ')) {
    if (line && line.length + 1 + w.length > width) {
      out.push(line)
      line = w
    } else line = line ? `${line} ${w}` : w
  }
  if (line) out.push(line)
  return out
}

/** The inputs' descriptions from action.yml beside the bundle (absent: the help has none). */
function actionDescriptions(): Record<string, string> {
  try {
    const text = readFileSync(new URL('../action.yml', import.meta.url), 'utf8')
    const doc = parseYaml(text) as { inputs?: Record<string, { description?: string }> }
    return Object.fromEntries(
      Object.entries(doc.inputs ?? {}).map(([k, v]) => [k, v.description ?? ''])
    )
  } catch {
    return {}
  }
}

export interface CliIo {
  out: (line: string) => void
  err: (line: string) => void
  env: NodeJS.ProcessEnv
  cwd: string
}

// the terminal itself: the run's own writes to stdout go through terminalFilter first
const stdoutWrite = process.stdout.write.bind(process.stdout)
const defaultIo: CliIo = {
  out: (l) => void stdoutWrite(`${l}\n`),
  err: (l) => void process.stderr.write(`${l}\n`),
  env: process.env,
  cwd: process.cwd()
}

/** Parsed command line: the command, the inputs given, a rollback's version. */
export interface CliArgs {
  command: Command
  inputs: Partial<Record<InputName, string>>
  repository?: string
  /** the inputs read from @FILE: no message quotes them */
  fromFiles: InputName[]
  /** --json: the result as one JSON object on stdout, the log on stderr */
  json?: boolean
  /** --help: the command's help, nothing run */
  help?: boolean
}

export class UsageError extends Error {}

/** The edit distance of two words, a swap of two neighbours counting as one (for "did you mean"). */
function distance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) =>
    Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0))
  )
  for (let i = 1; i <= a.length; i++)
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost)
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1])
        v = Math.min(v, d[i - 2]![j - 2]! + 1)
      d[i]![j] = v
    }
  return d[a.length]![b.length]!
}

/** The flag a mistyped one most likely meant, if one is close. */
export function suggest(name: string): string | undefined {
  const all = [...INPUT_NAMES, 'repository', 'json', 'help', 'version']
  const best = all.map((n) => [n, distance(name, n)] as const).sort((x, y) => x[1] - y[1])[0]
  if (best && best[1] <= Math.max(2, Math.floor(name.length / 4))) return best[0]
  return all.find((n) => n.startsWith(name) || (name.length >= 4 && n.includes(name)))
}

/** Read the command line and BG_DEPLOY_* variables into inputs; @FILE values read FILE. */
export function parseArgs(argv: string[], env: NodeJS.ProcessEnv = {}): CliArgs {
  const [command, ...rest] = argv
  if (!COMMANDS.includes(command as Command)) {
    const near = command && COMMANDS.find((c) => distance(command, c) <= 2)
    throw new UsageError(
      command
        ? `Unknown command '${command}'${near ? ` (did you mean '${near}'?)` : ''}: use deploy, rollback or status.`
        : 'No command.'
    )
  }
  const inputs: Partial<Record<InputName, string>> = {}
  for (const name of INPUT_NAMES) {
    const v = env[`BG_DEPLOY_${name.toUpperCase().replace(/-/g, '_')}`]
    if (v !== undefined && v !== '') inputs[name] = v
  }
  let repository: string | undefined
  let json = false
  let help = false
  const positional: string[] = []
  const fromFiles: InputName[] = []
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i]!
    if (arg === '-h' || arg === '--help') {
      help = true
      continue
    }
    if (arg === '--json') {
      json = true
      continue
    }
    if (arg.startsWith('-') && !arg.startsWith('--') && arg !== '-')
      throw new UsageError(
        `Unknown option ${arg}: the flags are the action's inputs, written in full (--host, --ssh-key); -h is the help.`
      )
    if (!arg.startsWith('--')) {
      positional.push(arg)
      continue
    }
    const eq = arg.indexOf('=')
    let name = eq > 0 ? arg.slice(2, eq) : arg.slice(2)
    let value: string | undefined = eq > 0 ? arg.slice(eq + 1) : undefined
    // --no-FLAG: false; --FLAG alone (or before another flag): true
    if (
      value === undefined &&
      name.startsWith('no-') &&
      FLAG_INPUTS.includes(name.slice(3) as InputName)
    ) {
      name = name.slice(3)
      value = 'false'
    } else if (value === undefined && FLAG_INPUTS.includes(name as InputName)) {
      const next = rest[i + 1]
      value = next !== undefined && /^(true|false)$/i.test(next) ? rest[++i]! : 'true'
    } else if (value === undefined) value = rest[++i]
    const known = (INPUT_NAMES as readonly string[]).includes(name)
    if (!known && name !== 'repository') {
      const near = suggest(name)
      throw new UsageError(
        `Unknown flag --${name}${near ? ` (did you mean --${near}?)` : ''}: the flags are the action's inputs (bg-deploy ${command} --help lists them).`
      )
    }
    if (value === undefined) throw new UsageError(`Flag --${name} needs a value.`)
    if (value.startsWith('@')) {
      // the name only: the value may be a path to a key
      if (!(FILE_INPUTS as readonly string[]).includes(name))
        throw new UsageError(
          `--${name} takes its value as written; @FILE is read only for secrets and values of several lines (${FILE_INPUTS.map((n) => `--${n}`).join(', ')}).`
        )
      value = readValueFile(name, value.slice(1), env)
      fromFiles.push(name as InputName)
    }
    if (name === 'repository') repository = value
    else inputs[name as InputName] = value
  }
  if (help) return { command: command as Command, inputs, repository, fromFiles, json, help }
  if (command === 'rollback') {
    if (positional.length > 1) throw new UsageError('rollback takes one version at most.')
    inputs.rollback = positional[0] ?? inputs.rollback ?? 'previous'
  } else if (positional.length > 0)
    throw new UsageError(`${command} takes no argument '${positional[0]}'.`)
  else if (command === 'deploy' && inputs.rollback)
    throw new UsageError('deploy with --rollback: use the rollback command.')
  return { command: command as Command, inputs, repository, fromFiles, json }
}

function readValueFile(name: string, file: string, env: NodeJS.ProcessEnv): string {
  const path = file.startsWith('~/') ? `${env.HOME ?? ''}${file.slice(1)}` : file
  try {
    return readFileSync(path, 'utf8')
  } catch (e) {
    throw new UsageError(`--${name} @${file}: ${(e as Error).message}`)
  }
}

/**
 * A deploy that builds: the image is built from the working tree and labelled with HEAD's commit,
 * so uncommitted changes would ship under a commit that does not hold them. Why it is refused, or
 * undefined when the tree is clean (or nothing is built).
 */
export function uncommitted(args: CliArgs, cwd: string): string | undefined {
  if (/^false$/i.test(args.inputs.build?.trim() ?? '')) return undefined
  const changed = git(cwd, 'diff', '--name-only', 'HEAD')
  const untracked = git(cwd, 'ls-files', '--others', '--exclude-standard')
  if (changed === undefined || untracked === undefined)
    return `${cwd} is not a git working copy with a commit: deploy builds a commit (its image is labelled with it). Run it in the repository, or deploy an image pushed before with --build false.`
  const files = [...changed.split('\n'), ...untracked.split('\n')].filter(Boolean).sort()
  if (files.length === 0) return undefined
  return `the working tree has ${files.length} uncommitted change(s) (${files.slice(0, 3).join(', ')}${files.length > 3 ? ', …' : ''}): deploy builds the working tree and labels the image with HEAD's commit, which does not hold them. Commit or stash them first, or deploy an image pushed before with --build false.`
}

/** owner/repo of a GitHub remote URL (https or ssh), or undefined. */
export function repositoryOfRemote(url: string): string | undefined {
  const m = /github\.com[:/]([^/\s]+)\/([^/\s]+?)(?:\.git)?\/?$/.exec(url.trim())
  return m ? `${m[1]}/${m[2]}` : undefined
}

function git(cwd: string, ...args: string[]): string | undefined {
  try {
    return execFileSync('git', ['-C', cwd, ...args], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore']
    }).trim()
  } catch {
    return undefined
  }
}

/**
 * What ssh on this machine already has, where the command line gives nothing else: the host keys
 * of ~/.ssh/known_hosts (no host-fingerprint, known-hosts or insecure-ignore-host-key given) and
 * the ssh-agent (no ssh-key). Returns what it took, for the log.
 */
export function userSsh(args: CliArgs, io: CliIo): { knownHosts?: string; agent?: string } {
  const taken: { knownHosts?: string; agent?: string } = {}
  const i = args.inputs
  if (
    i['host-fingerprint'] === undefined &&
    i['known-hosts'] === undefined &&
    i['insecure-ignore-host-key'] === undefined &&
    io.env.HOME
  ) {
    const file = `${io.env.HOME}/.ssh/known_hosts`
    try {
      i['known-hosts'] = readFileSync(file, 'utf8')
      taken.knownHosts = '~/.ssh/known_hosts'
    } catch {
      /* none: the config says what to pin */
    }
  }
  if (i['ssh-key'] === undefined && io.env.SSH_AUTH_SOCK) taken.agent = io.env.SSH_AUTH_SOCK
  return taken
}

/** The run's context from the working copy: its HEAD, its repository, who runs it. */
function cliContext(args: CliArgs, io: CliIo): RunContext {
  const repository =
    args.repository ??
    repositoryOfRemote(git(io.cwd, 'remote', 'get-url', 'origin') ?? '') ??
    io.cwd.split('/').filter(Boolean).at(-1)!
  const [owner = '', repo = ''] = repository.includes('/')
    ? repository.split('/')
    : ['', repository]
  const serverUrl = (io.env.GITHUB_SERVER_URL ?? 'https://github.com').replace(/\/$/, '')
  const actor = io.env.USER ?? userInfo().username
  return {
    sha: args.command === 'deploy' ? (git(io.cwd, 'rev-parse', 'HEAD') ?? '') : '',
    owner,
    repo,
    repositoryUrl: `${serverUrl}/${owner}/${repo}`,
    // the history's "run" column: where it was started from
    runUrl: `bg-deploy CLI on ${hostname()}`,
    actor,
    eventName: 'cli',
    workspace: io.cwd
  }
}

/**
 * What the action prints, for a terminal: groups as headings, annotations as lines, and no
 * workflow command left. Text between stop-commands and its token is the server's: printed with
 * its control characters removed, so it cannot drive the terminal either.
 */
export function terminalFilter(write: (line: string) => void): (text: string) => void {
  let stopToken: string | undefined
  let rest = ''
  const decode = (s: string) =>
    s
      .replace(/%0D/gi, '\r')
      .replace(/%0A/gi, '\n')
      .replace(/%3A/gi, ':')
      .replace(/%2C/gi, ',')
      .replace(/%25/g, '%')
  const clean = sanitizeForeign
  const line = (l: string) => {
    if (stopToken !== undefined) {
      if (l === `::${stopToken}::`) stopToken = undefined
      else write(clean(l))
      return
    }
    const m = /^::([a-z-]+)(?: ([^:]*))?::(.*)$/.exec(l)
    if (!m) return write(clean(l))
    const [, command, props = '', data = ''] = m
    switch (command) {
      case 'stop-commands':
        stopToken = data
        return
      case 'group':
        return write(`== ${clean(data)}`)
      case 'error':
      case 'warning':
      case 'notice': {
        const title = /(?:^|,)title=([^,]*)/.exec(props)?.[1]
        return write(
          `${command}: ${title ? `${clean(decode(title))}: ` : ''}${clean(decode(data))}`
        )
      }
      default:
        // endgroup, add-mask (never printed: it would show a secret), debug, set-output, ...
        return
    }
  }
  return (text: string) => {
    const lines = (rest + text).split(/\r?\n/)
    rest = lines.pop() ?? ''
    for (const l of lines) line(l)
  }
}

/** Run a command; the exit code: 0 done, 1 failed, 2 bad usage. */
export async function cli(argv: string[], io: CliIo = defaultIo): Promise<number> {
  if (argv.length === 0 || argv[0] === '--help' || argv[0] === '-h' || argv[0] === 'help') {
    if (argv[0] === 'help' && COMMANDS.includes(argv[1] as Command)) {
      io.out(commandHelp(argv[1] as Command, actionDescriptions()))
      return 0
    }
    io.out(USAGE)
    return argv.length === 0 ? 2 : 0
  }
  if (argv[0] === '--version' || argv[0] === '-V' || argv[0] === 'version') {
    io.out(`bg-deploy ${pkg.version}`)
    return 0
  }
  let args: CliArgs
  try {
    args = parseArgs(argv, io.env)
  } catch (e) {
    if (!(e instanceof UsageError)) throw e
    io.err(`bg-deploy: ${e.message}\n\n${USAGE}`)
    return 2
  }
  if (args.help) {
    io.out(commandHelp(args.command, actionDescriptions()))
    return 0
  }
  // --json: the log goes to stderr, stdout gets the result only
  const log = args.json ? io.err : io.out
  args.inputs['github-token'] ??= io.env.GITHUB_TOKEN
  const sshDefaults = userSsh(args, io)
  if (sshDefaults.knownHosts) log(`host keys: checked against ${sshDefaults.knownHosts}`)
  if (sshDefaults.agent) log('ssh: no --ssh-key, so the keys of your ssh-agent (SSH_AUTH_SOCK)')
  const ctx = { ...cliContext(args, io), agent: sshDefaults.agent }
  if (args.command === 'status') return status(args, ctx, io, log)
  if (args.command === 'check') return check(args, ctx, io, log)
  const dirty = args.command === 'deploy' ? uncommitted(args, io.cwd) : undefined
  if (dirty) {
    io.err(`bg-deploy: ${dirty}`)
    return 1
  }

  // the action's own code, its log turned into terminal lines
  const filter = terminalFilter(log)
  const write = process.stdout.write.bind(process.stdout)
  process.stdout.write = ((chunk: string | Uint8Array) => {
    filter(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8'))
    return true
  }) as typeof process.stdout.write
  let outcome: Outcome
  try {
    outcome = await run({
      cli: true,
      ctx,
      unquoted: args.fromFiles,
      getInput: (name) => args.inputs[name as InputName] ?? ''
    })
  } finally {
    filter('\n')
    process.stdout.write = write
  }
  const result = {
    version: outcome.version,
    image: outcome.image,
    digest: outcome.digest,
    release: outcome.releaseUrl,
    color: outcome.color,
    deployed: outcome.deployed,
    ...(outcome.error ? { error: outcome.error } : {})
  }
  if (args.json) io.out(JSON.stringify(result))
  else
    for (const [k, v] of Object.entries(result))
      if (v !== undefined && v !== '' && k !== 'error') io.out(`${k}: ${String(v)}`)
  return outcome.error ? 1 : 0
}

/** The config of a command that only reads the servers (status, check). */
function cliConfig(args: CliArgs, ctx: RunContext): ReturnType<typeof loadConfig> {
  // status and check only read the servers: they pull nothing, so they need no image
  const image = args.inputs.image ?? `bg-deploy/${args.inputs['app-name'] ?? (ctx.repo || 'app')}`
  try {
    return loadConfig(
      readInputs((name) => (name === 'image' ? image : (args.inputs[name as InputName] ?? ''))),
      {
        repository: `${ctx.owner}/${ctx.repo}`,
        workspace: ctx.workspace,
        unquoted: args.fromFiles,
        agent: ctx.agent
      }
    )
  } catch (e) {
    if (!/host key is not pinned/.test((e as Error).message)) throw e
    throw new Error(
      `${(e as Error).message}\nFrom the command line: --host-fingerprint "$(ssh HOST ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub)" run once where you trust the connection, or ssh to the server once so that ~/.ssh/known_hosts has its key (the command line reads it).`
    )
  }
}

/** status: every server's serving version and color, and its last deploys (--json: as one object). */
async function status(
  args: CliArgs,
  ctx: RunContext,
  io: CliIo,
  log: (line: string) => void
): Promise<number> {
  let failed = false
  let app = ''
  const report: {
    server: string
    serving?: { version: string; color: string }
    history?: unknown[]
    error?: string
  }[] = []
  try {
    const config = cliConfig(args, ctx)
    app = config.app.name
    const servers = [...config.hosts, ...(config.lb ? [config.lb] : [])]
    for (const ssh of servers) {
      const name = serverName(ssh)
      try {
        const shell = await connectSsh(ssh, { warn: (m) => io.err(`warning: ${m}`) })
        try {
          const s = await readStatus(shell, config)
          report.push({ server: name, serving: s.serving, history: s.history })
          log(
            `${name}: ${config.app.name} ${s.serving ? `serves ${s.serving.version} (${s.serving.color})` : 'serves nothing deployed by bg-deploy'}`
          )
          for (const l of s.lines) log(`  ${sanitizeForeign(l)}`)
          for (const h of s.history.slice().reverse())
            log(`  ${h.time}  ${h.action} ${h.version}  ${h.result}  ${h.color}  by ${h.actor}`)
        } finally {
          shell.dispose()
        }
      } catch (e) {
        failed = true
        const why = sanitizeForeign((e as Error).message)
        report.push({ server: name, error: why })
        io.err(`${name}: ${why}`)
      }
    }
  } catch (e) {
    io.err(`bg-deploy: ${(e as Error).message}`)
    return 1
  }
  if (args.json) io.out(JSON.stringify({ app, servers: report }))
  return failed ? 1 : 0
}

/**
 * check: each server (and the load balancer) before a first deploy: the SSH connection and its
 * host key here, the rest on the server (steps/check.sh). Exit 1 when a check fails.
 */
async function check(
  args: CliArgs,
  ctx: RunContext,
  io: CliIo,
  log: (line: string) => void
): Promise<number> {
  let failed = false
  const report: { server: string; checks: CheckLine[] }[] = []
  const say = (server: string, c: CheckLine) => {
    log(
      `  ${c.status === 'ok' ? 'ok  ' : c.status === 'warn' ? 'warn' : 'FAIL'}  ${c.name}: ${c.text}`
    )
    if (c.status === 'fail') failed = true
    report.find((r) => r.server === server)?.checks.push(c)
  }
  try {
    const config = cliConfig(args, ctx)
    const servers = [...config.hosts, ...(config.lb ? [config.lb] : [])]
    for (const ssh of servers) {
      const name = serverName(ssh)
      report.push({ server: name, checks: [] })
      log(`${name}:`)
      let shell
      try {
        shell = await connectSsh(ssh, { warn: (m) => io.err(`warning: ${m}`) })
      } catch (e) {
        say(name, { status: 'fail', name: 'ssh', text: sanitizeForeign((e as Error).message) })
        continue
      }
      try {
        say(name, {
          status: ssh.hostKeyPins.length > 0 ? 'ok' : 'warn',
          name: 'ssh',
          text:
            ssh.hostKeyPins.length > 0
              ? `logged in as ${ssh.username}, host key pinned`
              : `logged in as ${ssh.username}, but the host key is not checked: pin it with host-fingerprint`
        })
        const lb = config.lb && ssh === config.lb
        for (const c of await readChecks(
          shell,
          lb ? { ...config, engine: { ...config.engine } } : config
        ))
          // the load balancer runs no container: only its nginx and state matter
          if (!lb || /^(bash|flock|nginx-|upstream-file|state)/.test(c.name)) say(name, c)
      } catch (e) {
        say(name, { status: 'fail', name: 'script', text: sanitizeForeign((e as Error).message) })
      } finally {
        shell.dispose()
      }
    }
  } catch (e) {
    io.err(`bg-deploy: ${(e as Error).message}`)
    return 1
  }
  if (args.json) io.out(JSON.stringify({ ok: !failed, servers: report }))
  else
    log(
      failed
        ? 'Some checks failed: fix them, then run bg-deploy check again.'
        : 'Ready for a first deploy.'
    )
  return failed ? 1 : 0
}
