// The server's output, read: its stdout carries only marker lines (phase, event, result, history,
// serving, warning, error, await), its stderr only text to show. Every string from the server
// is sanitized where it enters, and what it can make the runner hold is bounded.
import { StringDecoder } from 'node:string_decoder'
import { sanitizeForeign } from '../foreign.js'
import { versionProblem } from '../version.js'
import {
  parseEvent,
  parseHistoryLine,
  unescapeMarker,
  type HistoryEntry,
  type ServerResult
} from './answer.js'
import { STAGES, type EventName, type Marker, type Stage } from './protocol.js'
export type { HistoryEntry } from './answer.js'

export interface RemoteEvent {
  name: EventName
  ms: number
}

export interface RemoteResult extends ServerResult {
  events: RemoteEvent[]
  /** the last entries of the server's deploy history, oldest first */
  history: HistoryEntry[]
  serving?: Serving
}

/** The color and version serving on a server, as its state file says. */
export interface Serving {
  color: 'blue' | 'green'
  version: string
}

/** Callbacks the output is streamed to (core.info / startGroup / endGroup in the action). */
export interface RemoteLog {
  /** a line of the server's output: foreign text, to be printed inert */
  line(text: string): void
  phase(name: string): void
  /** Something the user should fix on the server, though this run goes on (an annotation). */
  warning(text: string): void
}

/** The fields a stage came with (color, previous_color, version, image), as the script sent them. */
export type StageFields = Record<string, string>

/** Longest line kept whole: a server that never sends a newline cannot fill the runner's memory. */
export const MAX_LINE = 64 * 1024
/**
 * What a server can make the runner hold: history rows (the last ones kept; the script sends 10),
 * timeline events and warning annotations per run (the first ones kept; a run has about 10 events).
 */
export const MAX_HISTORY = 20
export const MAX_EVENTS = 100
export const MAX_WARNINGS = 20
const PHASE = /^[\w .()-]{1,200}$/

/**
 * Splits streamed chunks into lines and interprets the script's marker lines. Markers count only
 * on the script's stdout, which carries nothing else (the script sends every command's output to
 * stderr); stderr is only ever shown, never interpreted.
 */
export class OutputParser {
  private buffers = { out: '', err: '' }
  private decoders = { out: new StringDecoder('utf8'), err: new StringDecoder('utf8') }
  events: RemoteEvent[] = []
  history: HistoryEntry[] = []
  result?: Record<string, string>
  error?: string
  /** what serves on the server as its script ended */
  serving?: Serving
  /** action check: each check's verdict, name and text (the fix when it is not ok) */
  checks: { status: 'ok' | 'warn' | 'fail'; name: string; text: string }[] = []
  tail: string[] = []
  private warnings = 0

  constructor(
    private readonly log: RemoteLog,
    private readonly onStage: (stage: Stage, fields: StageFields) => void = () => {}
  ) {}

  push(stream: 'out' | 'err', chunk: Buffer | string): void {
    let text =
      this.buffers[stream] +
      (typeof chunk === 'string' ? chunk : this.decoders[stream].write(chunk))
    let nl: number
    while ((nl = text.indexOf('\n')) >= 0 || text.length > MAX_LINE) {
      const end = nl >= 0 && nl <= MAX_LINE ? nl : MAX_LINE
      this.handle(stream, text.slice(0, end))
      text = text.slice(end === nl ? end + 1 : end)
    }
    this.buffers[stream] = text
  }

  flush(): void {
    for (const s of ['out', 'err'] as const) {
      const rest = this.buffers[s] + this.decoders[s].end()
      if (rest) this.handle(s, rest)
      this.buffers[s] = ''
    }
  }

  private handle(stream: 'out' | 'err', raw: string): void {
    // every string from the server passes here first: one sanitizer for every output path
    const line = sanitizeForeign(raw)
    const m = stream === 'out' ? /^::bg-deploy-([a-z]+):: (.*)$/.exec(line) : null
    if (m) {
      const text = m[2]!
      /** a marker's text, unescaped onto its lines, as safe as any other line */
      const said = () => sanitizeForeign(unescapeMarker(text))
      switch (m[1] as Marker) {
        case 'phase': {
          const name = unescapeMarker(text)
          if (PHASE.test(name)) this.log.phase(name)
          return
        }
        case 'event': {
          const e = parseEvent(text)
          if (e && this.events.length < MAX_EVENTS) this.events.push(e)
          return
        }
        case 'result':
          this.result = Object.fromEntries(
            unescapeMarker(text)
              .split(' ')
              .map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)])
          )
          return
        case 'history': {
          const h = parseHistoryLine(unescapeMarker(text))
          if (h) this.history = [...this.history, h].slice(-MAX_HISTORY)
          return
        }
        case 'serving': {
          const f = Object.fromEntries(
            unescapeMarker(text)
              .split(' ')
              .map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)])
          )
          // foreign text: only a color and a version that could be ours are kept
          if (/^(blue|green)$/.test(f.color ?? '') && f.version && !versionProblem(f.version))
            this.serving = { color: f.color as 'blue' | 'green', version: f.version }
          return
        }
        case 'warning':
          if (this.warnings++ < MAX_WARNINGS) this.log.warning(said())
          return
        case 'error':
          this.error = said().slice(0, MAX_LINE)
          return
        case 'check': {
          const m2 = /^(ok|warn|fail) ([a-z-]{1,40}) (.*)$/s.exec(said())
          if (m2 && this.checks.length < 100)
            this.checks.push({ status: m2[1] as 'ok', name: m2[2]!, text: m2[3]!.slice(0, 2000) })
          return
        }
        case 'await': {
          const [stage, ...kv] = unescapeMarker(text).split(' ')
          if (!(STAGES as readonly string[]).includes(stage ?? '')) return
          this.onStage(
            stage as Stage,
            Object.fromEntries(
              kv.map((f) => [f.slice(0, f.indexOf('=')), f.slice(f.indexOf('=') + 1)])
            )
          )
          return
        }
      }
    }
    this.tail = [...this.tail.slice(-19), line]
    this.log.line(line)
  }
}
