import * as jobLog from './job-log.js'
import { foreignText } from './foreign.js'
import type { RemoteLog } from './remote/output.js'

/**
 * The server's output as the job log shows it: a group per phase, its text printed inert (the
 * action's own commands resume first). While held (the build's group is open), it is queued.
 */
export class ServerLog implements RemoteLog {
  private open = false
  private readonly foreign = foreignText
  private held: (() => void)[] | undefined

  /** the server's phase the run is in (the last one it reported) */
  lastPhase?: string

  constructor(private readonly host: string) {}

  hold(): void {
    this.held ??= []
  }

  release(): void {
    const queued = this.held ?? []
    this.held = undefined
    for (const f of queued) f()
  }

  end(): void {
    this.release()
    this.foreign.resume()
    if (this.open) jobLog.endGroup()
    this.open = false
  }

  line = (text: string) => this.now(() => this.foreign.print(text))

  warning = (text: string) =>
    this.now(() => {
      jobLog.warning(text, { title: `Server ${this.host}` })
    })

  phase = (name: string) => {
    this.lastPhase = name
    this.now(() => {
      if (this.open) jobLog.endGroup()
      jobLog.startGroup(`${this.host}: ${name}`)
      this.open = true
    })
  }

  private now(f: () => void): void {
    if (this.held) this.held.push(f)
    else f()
  }
}
