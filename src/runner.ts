import { spawn } from 'node:child_process'
import { foreignText, type ForeignText } from './foreign.js'

export interface RunResult {
  code: number
  stdout: string
  stderr: string
}

/**
 * env is added to the runner's environment (DOCKER_CONFIG for a temporary login); signal stops the
 * command (a build begun before the servers were reached, no longer wanted); shown is the command
 * line as the log shows it (default: the arguments as they are), so that a value which may be
 * secret (a build argument) is not printed.
 */
export interface RunOptions {
  input?: string
  cwd?: string
  silent?: boolean
  env?: Record<string, string>
  signal?: AbortSignal
  shown?: string[]
}

/** Runs one command as argv (never through a shell). The single place local commands execute. */
export interface Runner {
  run(cmd: string, args: string[], opts?: RunOptions): Promise<RunResult>
}

export class CommandError extends Error {
  constructor(
    readonly cmd: string,
    readonly result: RunResult
  ) {
    const tail = (result.stderr || result.stdout).trim().split('\n').slice(-5).join('\n')
    super(`\`${cmd}\` failed with exit code ${result.code}${tail ? `:\n${tail}` : ''}`)
    this.name = 'CommandError'
  }
}

/** Run and throw CommandError on a non-zero exit. */
export async function runChecked(
  runner: Runner,
  cmd: string,
  args: string[],
  opts?: RunOptions
): Promise<RunResult> {
  const result = await runner.run(cmd, args, opts)
  if (result.code !== 0) throw new CommandError(`${cmd} ${args[0] ?? ''}`.trim(), result)
  return result
}

/**
 * A runner whose commands print into the job log as foreign text: the command line, then its
 * output, between `::stop-commands::` and its token. What a command prints is not the action's:
 * `docker build` runs the Dockerfile's `RUN` steps (package installs, third-party scripts), whose
 * output could otherwise carry `::set-output`, `##[…]` or `::stop-commands::`.
 */
export function foreignRunner(log: ForeignText = foreignText): Runner {
  return {
    run: (cmd, args, opts = {}) =>
      new Promise((resolve, reject) => {
        if (!opts.silent) log.print(`[command]${cmd} ${(opts.shown ?? args).join(' ')}`)
        const child = spawn(cmd, args, {
          cwd: opts.cwd,
          env: { ...process.env, ...opts.env },
          stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe']
        })
        const out: Buffer[] = []
        const err: Buffer[] = []
        // whole lines to the log, as they come from either stream
        let partial = ''
        const show = (d: Buffer) => {
          if (opts.silent) return
          const text = partial + d.toString('utf8')
          const end = Math.max(text.lastIndexOf('\n'), text.lastIndexOf('\r'))
          if (end >= 0) log.print(text.slice(0, end).replace(/\r\n/g, '\n'))
          partial = text.slice(end + 1)
        }
        child.stdout?.on('data', (d: Buffer) => {
          out.push(d)
          show(d)
        })
        child.stderr?.on('data', (d: Buffer) => {
          err.push(d)
          show(d)
        })
        if (opts.input !== undefined) child.stdin?.end(opts.input)
        const stop = () => child.kill('SIGTERM')
        if (opts.signal?.aborted) stop()
        else opts.signal?.addEventListener('abort', stop, { once: true })
        child.on('error', reject)
        child.on('close', (code, sig) => {
          opts.signal?.removeEventListener('abort', stop)
          if (partial) log.print(partial)
          resolve({
            code: code ?? (sig ? 143 : 1),
            stdout: Buffer.concat(out).toString(),
            stderr: Buffer.concat(err).toString()
          })
        })
      })
  }
}

/** The real runner: its commands' output streamed into the job log, inert. */
export const execRunner: Runner = foreignRunner()
