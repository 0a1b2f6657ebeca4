// What a run shares between its steps: the outcome it builds up (main turns it into outputs and
// the job summary, also when a step fails), the side effects it is given, and the timeline.
import type { Config } from './config.js'
import type { RunContext } from './context.js'
import type { ServerOutcome } from './fleet.js'
import type { Registry } from './registry.js'
import type { ReleasesApi } from './release.js'
import type { HistoryEntry, RemoteEvent, Serving } from './remote/output.js'
import type { RunnerStep, TimelineStep } from './remote/protocol.js'
import type { WatchCounts } from './remote/answer.js'
import type { Runner } from './runner.js'
import type { RemoteShell, SshConfig } from './ssh.js'

/** What a run produced so far; main turns it into outputs even when a later step fails. */
export interface Outcome {
  version?: string
  image?: string
  tags: string[]
  digest?: string
  releaseUrl?: string
  /** the release is still a draft: it is published only once its version serves */
  releaseDraft?: boolean
  color?: string
  previousColor?: string
  /** the version that served before the run (empty on a first deploy) */
  previousVersion?: string
  deployed: boolean
  /** the timeline: the runner's steps (build, pushed, drafted) and the server's, by time */
  events: TimelineEvent[]
  /** the server's last deploy history entries */
  history?: HistoryEntry[]
  /** a run over several servers: how each one ended */
  servers?: ServerOutcome[]
  /** promote: false: the new version runs on every server, ready to be switched to */
  prepared?: boolean
  /** the preview routes of the new color (nginx-preview-file) */
  previews?: string[]
  /** connections still open on the old color when the drain ended (drain-timeout) */
  openConnections?: number
  /** what the watch window counted (one server, the load balancer, or the sum over servers) */
  watch?: WatchCounts
  /** why the run failed */
  error?: string
  /** the step the run failed in: one of the runner's, or the server's phase */
  failedPhase?: string
  /** what serves on the server as its script ended (one server over SSH) */
  serving?: Serving
}

/**
 * One run, as every step sees it: the validated config, the workflow's context, the side effects
 * it may use, and the outcome it builds up.
 */
export interface Run {
  config: Config
  ctx: RunContext
  deps: Deps
  outcome: Outcome
}

export interface TimelineEvent {
  name: TimelineStep
  ms: number
}

export interface Deps {
  runner: Runner
  releases: (token: string) => ReleasesApi
  registry: (config: Config) => Registry
  connect: (ssh: SshConfig) => Promise<RemoteShell>
}

/** Run a step of the runner's; if it fails, the summary names it as where the run failed. */
export async function inPhase<T>(
  outcome: Outcome,
  phase: string,
  step: () => Promise<T>
): Promise<T> {
  try {
    return await step()
  } catch (e) {
    outcome.failedPhase ??= phase
    throw e
  }
}

/** A step of the runner's own, in the timeline beside the server's. */
export function runnerEvent(outcome: Outcome, name: RunnerStep): void {
  outcome.events = [...outcome.events, { name, ms: Date.now() }]
}

/** The timeline so far with the server's events, in the order they happened. */
export function withEvents(outcome: Outcome, events: readonly RemoteEvent[]): TimelineEvent[] {
  return [...outcome.events, ...events].sort((a, b) => a.ms - b.ms)
}

/**
 * Two steps at once. When either fails, `undo` gets how each ended (to take back what the other
 * did), then the first failure is thrown.
 */
export async function both<A, B>(
  a: Promise<A>,
  b: Promise<B>,
  undo: (
    ended: [PromiseSettledResult<A>, PromiseSettledResult<B>]
  ) => Promise<unknown> | void = () => undefined
): Promise<[A, B]> {
  const ended = await Promise.allSettled([a, b])
  const [x, y] = ended
  if (x.status === 'fulfilled' && y.status === 'fulfilled') return [x.value, y.value]
  await undo(ended)
  throw (x.status === 'rejected' ? x.reason : (y as PromiseRejectedResult).reason) as Error
}
