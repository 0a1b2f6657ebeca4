import { getExecOutput } from '@actions/exec'

export interface RunResult {
  code: number
  stdout: string
  stderr: string
}

/** env is added to the runner's environment (DOCKER_CONFIG for a temporary login). */
export interface RunOptions {
  input?: string
  cwd?: string
  silent?: boolean
  env?: Record<string, string>
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
