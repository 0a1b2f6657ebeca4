// The command line for operators: `npx bg-deploy deploy|rollback|status`, with the action's inputs
// as flags (or the same config file), running the same code as the action. A rollback or a look at
// what serves works while GitHub Actions is down.
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { hostname, userInfo } from 'node:os'
import { FILE_INPUTS, INPUT_NAMES, loadConfig, readInputs, type InputName } from './config.js'
import type { RunContext } from './context.js'
import type { Outcome } from './run.js'
import { serverName } from './fleet.js'
import { sanitizeForeign } from './foreign.js'
import { run } from './main.js'
import { readStatus } from './remote/session.js'
import { connectSsh } from './ssh.js'

const COMMANDS = ['deploy', 'rollback', 'status'] as const
type Command = (typeof COMMANDS)[number]

export const USAGE = `Usage: bg-deploy <command> [--<input> <value>]...

Commands:
  deploy              build, push, release and switch, as the action does on a push
  rollback [VERSION]  switch back to VERSION (default: previous), building nothing
  status              what serves on each server, and its last deploys

Every input of the action is a flag of the same name (--host, --ssh-key, --config, ...), or an
environment variable BG_DEPLOY_<NAME> (BG_DEPLOY_SSH_KEY); a flag wins. A value @FILE is read from
FILE (--ssh-key @~/.ssh/deploy_key). --config FILE reads the same YAML file as the action.
--repository OWNER/REPO names the GitHub repository (default: the origin remote's); the release is
made with --github-token or GITHUB_TOKEN.`

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
}

export class UsageError extends Error {}

/** Read the command line and BG_DEPLOY_* variables into inputs; @FILE values read FILE. */
export function parseArgs(argv: string[], env: NodeJS.ProcessEnv = {}): CliArgs {
  const [command, ...rest] = argv
  if (!COMMANDS.includes(command as Command))
    throw new UsageError(
      command ? `Unknown command '${command}': use deploy, rollback or status.` : 'No command.'
    )
  const inputs: Partial<Record<InputName, string>> = {}
  for (const name of INPUT_NAMES) {
    const v = env[`BG_DEPLOY_${name.toUpperCase().replace(/-/g, '_')}`]
    if (v !== undefined && v !== '') inputs[name] = v
  }
  let repository: string | undefined
  const positional: string[] = []
  const fromFiles: InputName[] = []
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i]!
    if (!arg.startsWith('--')) {
      positional.push(arg)
      continue
    }
    const eq = arg.indexOf('=')
    const name = eq > 0 ? arg.slice(2, eq) : arg.slice(2)
    let value = eq > 0 ? arg.slice(eq + 1) : rest[++i]
    if (value === undefined) throw new UsageError(`Flag --${name} needs a value.`)
    const known = (INPUT_NAMES as readonly string[]).includes(name)
    if (!known && name !== 'repository')
      throw new UsageError(`Unknown flag --${name}: the flags are the action's inputs.`)
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
  if (command === 'rollback') {
    if (positional.length > 1) throw new UsageError('rollback takes one version at most.')
    inputs.rollback = positional[0] ?? inputs.rollback ?? 'previous'
  } else if (positional.length > 0)
    throw new UsageError(`${command} takes no argument '${positional[0]}'.`)
  else if (command === 'deploy' && inputs.rollback)
    throw new UsageError('deploy with --rollback: use the rollback command.')
  return { command: command as Command, inputs, repository, fromFiles }
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
    io.out(USAGE)
    return argv.length === 0 ? 2 : 0
  }
  let args: CliArgs
  try {
    args = parseArgs(argv, io.env)
  } catch (e) {
    if (!(e instanceof UsageError)) throw e
    io.err(`bg-deploy: ${e.message}\n\n${USAGE}`)
    return 2
  }
  args.inputs['github-token'] ??= io.env.GITHUB_TOKEN
  const ctx = cliContext(args, io)
  if (args.command === 'status') return status(args, ctx, io)
  const dirty = args.command === 'deploy' ? uncommitted(args, io.cwd) : undefined
  if (dirty) {
    io.err(`bg-deploy: ${dirty}`)
    return 1
  }

  // the action's own code, its log turned into terminal lines
  const filter = terminalFilter(io.out)
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
  for (const [k, v] of [
    ['version', outcome.version],
    ['image', outcome.image],
    ['digest', outcome.digest],
    ['release', outcome.releaseUrl],
    ['color', outcome.color],
    ['deployed', String(outcome.deployed)]
  ] as const)
    if (v) io.out(`${k}: ${v}`)
  return outcome.error ? 1 : 0
}

/** status: every server's serving version and color, and its last deploys. */
async function status(args: CliArgs, ctx: RunContext, io: CliIo): Promise<number> {
  let failed = false
  try {
    const config = loadConfig(
      readInputs((name) => args.inputs[name as InputName] ?? ''),
      { repository: `${ctx.owner}/${ctx.repo}`, workspace: ctx.workspace, unquoted: args.fromFiles }
    )
    const servers = [...config.hosts, ...(config.lb ? [config.lb] : [])]
    for (const ssh of servers) {
      const name = serverName(ssh)
      try {
        const shell = await connectSsh(ssh, { warn: (m) => io.err(`warning: ${m}`) })
        try {
          const s = await readStatus(shell, config)
          io.out(
            `${name}: ${config.app.name} ${s.serving ? `serves ${s.serving.version} (${s.serving.color})` : 'serves nothing deployed by bg-deploy'}`
          )
          for (const l of s.lines) io.out(`  ${sanitizeForeign(l)}`)
          for (const h of s.history.slice().reverse())
            io.out(`  ${h.time}  ${h.action} ${h.version}  ${h.result}  ${h.color}  by ${h.actor}`)
        } finally {
          shell.dispose()
        }
      } catch (e) {
        failed = true
        io.err(`${name}: ${sanitizeForeign((e as Error).message)}`)
      }
    }
  } catch (e) {
    io.err(`bg-deploy: ${(e as Error).message}`)
    return 1
  }
  return failed ? 1 : 0
}
