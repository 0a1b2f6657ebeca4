// The script running on a server over one SSH session: sent with its arguments and stdin, its
// output streamed through the parser, the commands of a run in two phases written to its stdin,
// command-timeout enforced, and its end turned into a result or an error that explains.
import { PassThrough } from 'node:stream'
import type { Config } from '../config.js'
import type { ExecResult, RemoteShell } from '../ssh.js'
import { checkResult } from './answer.js'
import {
  OutputParser,
  type HistoryEntry,
  type RemoteEvent,
  type RemoteLog,
  type RemoteResult,
  type Serving,
  type StageFields
} from './output.js'
import type { Command, Stage } from './protocol.js'
import {
  loadDeployScript,
  remoteCommand,
  remoteStdin,
  scriptArgs,
  type RemoteRequest
} from './request.js'

/** Run the script on the server and turn its output into a result, or an error that explains. */
export async function runRemote(
  shell: RemoteShell,
  config: Config,
  req: RemoteRequest,
  log: RemoteLog,
  script = loadDeployScript()
): Promise<RemoteResult> {
  return startRemote(shell, config, req, log, script).result
}

/**
 * The script running on one server in a run over several, or on the one server while the runner
 * builds: the stages it reports, the commands it is sent, and its result. Its stdin stays open until close(); a script that loses it (the runner
 * died) acts as its role says (src/remote/main.sh).
 */
export interface RemoteSession {
  /** the stage's fields once the script reports it; rejects with the run's error if it ends first */
  reached(stage: Stage): Promise<StageFields>
  /** the fields the stage came with the last time the script reported it (it may repeat one) */
  latest(stage: Stage): StageFields | undefined
  send(command: Command | `${'switch' | 'pull'} ${'blue' | 'green'}`): void
  /** no more commands: the script reads end of input */
  close(): void
  /** start the command-timeout clock (at once, unless the script waits for the build first) */
  arm(): void
  readonly result: Promise<RemoteResult>
}

export function startRemote(
  shell: RemoteShell,
  config: Config,
  req: RemoteRequest,
  log: RemoteLog,
  script = loadDeployScript()
): RemoteSession {
  const stages = new Map<Stage, StageFields>()
  const waiting = new Map<
    Stage,
    { resolve: (f: StageFields) => void; reject: (e: Error) => void }[]
  >()
  const parser = new OutputParser(log, (stage, fields) => {
    stages.set(stage, fields)
    for (const w of waiting.get(stage) ?? []) w.resolve(fields)
    waiting.delete(stage)
  })
  const stdin = new PassThrough()
  stdin.write(remoteStdin(script, config, req.role))
  if ((!req.role || req.role === 'single') && !req.buildWait) stdin.end()
  // command-timeout: a script that hangs (a stuck lock, pull or docker) does not hold the runner;
  // its connection is closed, as when the runner dies
  let timer: NodeJS.Timeout | undefined
  let timedOut = false
  let expire: (r: ExecResult) => void = () => undefined
  const expired = new Promise<ExecResult>((resolve) => (expire = resolve))
  const arm = () => {
    if (timer) return
    timer = setTimeout(() => {
      timedOut = true
      shell.dispose()
      // the channel's end, if the closed connection does not report it
      setTimeout(() => expire({ code: null, signal: null }), 2000).unref()
    }, config.commandTimeout * 1000)
    timer.unref()
  }
  const result = Promise.race([
    shell.exec(remoteCommand(scriptArgs(config, req)), {
      stdin,
      onStdout: (c) => parser.push('out', c),
      onStderr: (c) => parser.push('err', c)
    }),
    expired
  ])
    .finally(() => clearTimeout(timer))
    .then((r) => {
      parser.flush()
      if (timedOut)
        throw new RemoteError(
          `The server's script did not finish within command-timeout (${config.commandTimeout} s), so the runner closed its connection. The last thing it reported is in the log above. The server keeps serving what nginx points at, and the next run recovers what this one left half-done. Find what hangs on the server, or raise command-timeout.`,
          null,
          parser.events,
          parser.history
        )
      return answer(parser, r, config, req)
    })
  if (!req.buildWait) arm()
  // once the script has ended, a stage it never reported never comes: later askers hear so at once
  let ended: Error | undefined
  const settle = (e: Error) => {
    ended = e
    for (const ws of waiting.values()) for (const w of ws) w.reject(e)
    waiting.clear()
  }
  result.then(
    () => settle(new Error('the script finished before it reached this stage')),
    (e: Error) => settle(e)
  )
  return {
    reached(stage) {
      const seen = stages.get(stage)
      if (seen) return Promise.resolve(seen)
      if (ended) return Promise.reject(ended)
      return new Promise((resolve, reject) => {
        waiting.set(stage, [...(waiting.get(stage) ?? []), { resolve, reject }])
      })
    },
    latest(stage) {
      return stages.get(stage)
    },
    send(command) {
      if (!stdin.writableEnded) stdin.write(`${command}\n`)
    },
    close() {
      if (!stdin.writableEnded) stdin.end()
    },
    arm,
    result
  }
}

function answer(
  parser: OutputParser,
  r: { code: number | null; signal: string | null },
  config: Config,
  req: RemoteRequest
): RemoteResult {
  if (r.code === 0 && parser.result) {
    const checked = checkResult(parser.result, {
      image: config.image,
      action: req.action,
      version: req.version,
      sent: req.image
    })
    return { ...checked, events: parser.events, history: parser.history, serving: parser.serving }
  }
  try {
    fail(parser, r)
  } catch (e) {
    if (e instanceof RemoteError) e.serving = parser.serving
    throw e
  }
}

function fail(parser: OutputParser, r: { code: number | null; signal: string | null }): never {
  if (parser.error) throw new RemoteError(parser.error, r.code, parser.events, parser.history)
  if (r.code === null)
    throw new RemoteError(
      `The SSH session ended before the deploy finished${r.signal ? ` (signal ${r.signal})` : ''}. The server keeps serving what nginx points at; re-run the workflow and the next deploy completes or redoes this one.`,
      null,
      parser.events,
      parser.history
    )
  throw new RemoteError(
    `The deploy script failed with exit code ${r.code}${parser.result ? '' : ' and no result'}. Last output:\n${parser.tail.slice(-10).join('\n')}`,
    r.code,
    parser.events,
    parser.history
  )
}

export class RemoteError extends Error {
  /** what serves on the server as its script ended */
  serving?: Serving
  constructor(
    message: string,
    readonly code: number | null,
    readonly events: RemoteEvent[],
    readonly history: HistoryEntry[] = []
  ) {
    super(message)
    this.name = 'RemoteError'
  }
}

/** What a server says of an app (action status): what serves, its last history entries. */
export interface ServerStatus {
  serving?: Serving
  history: HistoryEntry[]
  /** the script's other lines (e.g. nothing deployed here) */
  lines: string[]
}

/**
 * Run the script in a read-only action (status, check): it takes no lock, changes nothing and is
 * sent no secret. The parsed output, or an error with the script's last lines.
 */
async function readOnly(
  shell: RemoteShell,
  config: Config,
  action: 'status' | 'check',
  script: string
): Promise<{ parser: OutputParser; lines: string[] }> {
  const lines: string[] = []
  const parser = new OutputParser({
    line: (t) => lines.push(t),
    phase: () => undefined,
    warning: (t) => lines.push(`warning: ${t}`)
  })
  const args = scriptArgs(config, { action, image: config.image, actor: '', runUrl: '' })
  const r = await shell.exec(remoteCommand(args), {
    stdin: remoteStdin(script, config, 'status'),
    onStdout: (c) => parser.push('out', c),
    onStderr: (c) => parser.push('err', c)
  })
  parser.flush()
  if (r.code !== 0)
    throw new Error(
      parser.error ??
        `The ${action} script failed with exit code ${r.code}. Last output:\n${parser.tail.slice(-10).join('\n')}`
    )
  return { parser, lines }
}

/** Ask the server what serves, with the same script: it reads, takes no lock and changes nothing. */
export async function readStatus(
  shell: RemoteShell,
  config: Config,
  script = loadDeployScript()
): Promise<ServerStatus> {
  const { parser, lines } = await readOnly(shell, config, 'status', script)
  return { serving: parser.serving, history: parser.history, lines }
}

/** What `bg-deploy check` found on a server: each check, ok or the exact fix. */
export type CheckLine = OutputParser['checks'][number]

/** Run the checks of steps/check.sh: the script reads, takes no lock and changes nothing. */
export async function readChecks(
  shell: RemoteShell,
  config: Config,
  script = loadDeployScript()
): Promise<CheckLine[]> {
  return (await readOnly(shell, config, 'check', script)).parser.checks
}
