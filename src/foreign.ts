import { randomBytes } from 'node:crypto'
import { EOL } from 'node:os'

/**
 * Text that came from a server (its log, an error, a warning, a phase, an app's log lines), made
 * safe for every place it is shown: the job log, the job summary, a terminal, an output. Control
 * characters go (C0 but tab and newline, DEL, the C1 range that terminals read as escape, OSC, DCS
 * and CSI introducers, and the bidirectional overrides that reorder what a reader sees); a lone
 * carriage return goes too, since the runner reads it as a line break and a terminal as a return
 * to the line's start.
 */
export function sanitizeForeign(text: string): string {
  return text.replace(/[\0-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]/g, '')
}

/** Has the text a character sanitizeForeign would remove (or a newline)? */
export function hasControl(text: string): boolean {
  return /[\0-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]/.test(text)
}

/** The lines the runner reads in a text: `\r\n`, `\n` and a lone `\r` each end a line. */
export function runnerLines(text: string): string[] {
  return text.split(/\r\n|\r|\n/)
}

/**
 * Prints text from outside (the server's script, docker on the server, an app's log lines) so
 * that the runner reads no workflow command in it. The runner finds `::cmd::` after leading white
 * space and the legacy `##[cmd]` anywhere in a line, so no prefix defuses a line; only
 * `::stop-commands::TOKEN` … `::TOKEN::` does. The token is fresh for each run and never leaves the
 * runner, so foreign text cannot end the pause. The action's own commands (groups, annotations)
 * call `resume()` first.
 */
export class ForeignText {
  private stopped = false

  constructor(
    private readonly write: (s: string) => void = (s) => void process.stdout.write(s),
    private readonly token = randomBytes(16).toString('hex')
  ) {}

  print(text: string): void {
    if (!this.stopped) {
      this.write(`::stop-commands::${this.token}${EOL}`)
      this.stopped = true
    }
    for (const line of runnerLines(text)) this.write(line + EOL)
  }

  /** Let the runner read commands again (before the action's own). */
  resume(): void {
    if (!this.stopped) return
    this.write(`::${this.token}::${EOL}`)
    this.stopped = false
  }
}

/**
 * The run's one stream of foreign text: the server's output, the build's, every command's. One
 * instance, so that its pause and resume stay paired however their lines interleave.
 */
export const foreignText = new ForeignText()
