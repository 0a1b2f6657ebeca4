import { spawn } from 'node:child_process'
import { getExecOutput } from '@actions/exec'

export interface RunResult {
  code: number
  stdout: string
  stderr: string
}

/**
 * env is added to the runner's environment (DOCKER_CONFIG for a temporary login); signal stops the
 * command (a build begun before the servers were reached, no longer wanted).
 */
export interface RunOptions {
  input?: string
  cwd?: string
  silent?: boolean
  env?: Record<string, string>
  signal?: AbortSignal
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

/** The real runner: @actions/exec, output streamed into the job log. */
export const execRunner: Runner = {
  async run(cmd, args, opts = {}) {
    if (opts.signal) return stoppable(cmd, args, opts, opts.signal)
    const r = await getExecOutput(cmd, args, {
      ignoreReturnCode: true,
      cwd: opts.cwd,
      silent: opts.silent,
      env: opts.env ? ({ ...process.env, ...opts.env } as Record<string, string>) : undefined,
      input: opts.input === undefined ? undefined : Buffer.from(opts.input)
    })
    return { code: r.exitCode, stdout: r.stdout, stderr: r.stderr }
  }
}

/**
 * A command that can be stopped: as @actions/exec runs it (the command line, then its output, in
 * the job log), killed (SIGTERM) when the signal aborts; it then ends with code 143.
 */
function stoppable(
  cmd: string,
  args: string[],
  opts: RunOptions,
  signal: AbortSignal
): Promise<RunResult> {
  if (!opts.silent) process.stdout.write(`[command]${cmd} ${args.join(' ')}\n`)
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      cwd: opts.cwd,
      env: { ...process.env, ...opts.env },
      stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe']
    })
    const out: Buffer[] = []
    const err: Buffer[] = []
    child.stdout?.on('data', (d: Buffer) => {
      out.push(d)
      if (!opts.silent) process.stdout.write(d)
    })
    child.stderr?.on('data', (d: Buffer) => {
      err.push(d)
      if (!opts.silent) process.stdout.write(d)
    })
    if (opts.input !== undefined) child.stdin?.end(opts.input)
    const stop = () => child.kill('SIGTERM')
    if (signal.aborted) stop()
    else signal.addEventListener('abort', stop, { once: true })
    child.on('error', reject)
    child.on('close', (code, sig) => {
      signal.removeEventListener('abort', stop)
      resolve({
        code: code ?? (sig ? 143 : 1),
        stdout: Buffer.concat(out).toString(),
        stderr: Buffer.concat(err).toString()
      })
    })
  })
}
