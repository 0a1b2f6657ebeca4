// What the server answers is checked before it is used: the result line's values become step
// outputs (a workflow may put them into a `run:` step), history rows and events go into the job
// summary and the timeline output. A server that answers anything else fails the run.
import { hasControl } from '../foreign.js'
import { EVENTS, HISTORY_FIELDS, RESULT_FIELDS, type EventName } from './protocol.js'
import { versionProblem } from '../version.js'

export interface ServerResult {
  deployed: boolean
  color?: Color
  previousColor?: Color
  version?: string
  image?: string
  /** the version that served when the run began (empty on a first deploy) */
  previousVersion?: string
  /** connections still open on the old color when its drain ended at drain-timeout */
  openConnections?: number
  /** what the watch counted: nginx's answers for the new version after the switch, and for the
   * one it replaced just before the switch */
  watch?: WatchCounts
}

export interface WatchCounts {
  total: number
  bad: number
  baseTotal: number
  baseBad: number
}

export type Color = 'blue' | 'green'

export type HistoryEntry = Record<(typeof HISTORY_FIELDS)[number], string>

export class MalformedAnswer extends Error {
  constructor(what: string) {
    super(
      `The server's answer was malformed: ${what}. No output was written from it. Check the server (the state and history files under /var/lib/bg-deploy or ~/.bg-deploy, and who can write them).`
    )
    this.name = 'MalformedAnswer'
  }
}

/** Marker text comes escaped onto one line: `\\` `\n` `\r`. */
export function unescapeMarker(text: string): string {
  return text.replace(/\\([\\nr])/g, (_, c: string) => (c === 'n' ? '\n' : c === 'r' ? '\r' : '\\'))
}

/** A value for a message: quoted as JSON (control characters visible) or only its length. */
function shown(v: string): string {
  return v.length <= 200 ? JSON.stringify(v) : `(${v.length} characters)`
}

const IMAGE_TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/
const DIGEST = /^sha256:[0-9a-f]{64}$/

/** Is `ref` the repository `image` with a tag or a digest? */
export function isImageOf(ref: string, image: string): boolean {
  if (ref.startsWith(`${image}@`)) return DIGEST.test(ref.slice(image.length + 1))
  if (ref.startsWith(`${image}:`)) return IMAGE_TAG.test(ref.slice(image.length + 1))
  return false
}

/**
 * Check the result line's fields: colors are blue or green; a deploy's (or a task's) version and
 * image are exactly the ones sent; a rollback's (the server's choice, from its history) pass the version
 * rules and are the `image` input with a tag or digest.
 */
export function checkResult(
  fields: Record<string, string>,
  expected: {
    image: string
    action: 'deploy' | 'rollback' | 'task'
    version?: string
    sent?: string
  }
): ServerResult {
  const extra = Object.keys(fields).filter((k) => !(RESULT_FIELDS as readonly string[]).includes(k))
  if (extra.length > 0) throw new MalformedAnswer(`unknown result fields ${shown(extra.join(' '))}`)
  const deployed = fields.deployed ?? ''
  if (deployed !== 'true' && deployed !== 'false')
    throw new MalformedAnswer(`deployed is ${shown(deployed)}, not true or false`)
  const color = (name: string): Color | undefined => {
    const v = fields[name] ?? ''
    if (v === '') return undefined
    if (v === 'blue' || v === 'green') return v
    throw new MalformedAnswer(`${name} is ${shown(v)}, not blue or green`)
  }
  const version = fields.version || undefined
  const sentBy = expected.action !== 'rollback'
  if (sentBy && version !== (expected.version || undefined))
    throw new MalformedAnswer(
      `version is ${shown(version ?? '')}, not the version sent (${shown(expected.version ?? '')})`
    )
  if (expected.action === 'rollback' && (!version || versionProblem(version)))
    throw new MalformedAnswer(`version is ${shown(version ?? '')}, which is not a version`)
  const image = fields.image || undefined
  if (sentBy && expected.sent !== undefined) {
    if (image !== undefined && image !== expected.sent)
      throw new MalformedAnswer(`image is ${shown(image)}, not the image sent (${expected.sent})`)
  } else if (image !== undefined && !isImageOf(image, expected.image))
    throw new MalformedAnswer(
      `image is ${shown(image)}, not ${expected.image} with a tag or a @sha256: digest`
    )
  const open = fields.open_connections || undefined
  if (open !== undefined && !/^\d{1,9}$/.test(open))
    throw new MalformedAnswer(`open_connections is ${shown(open)}, not a count`)
  const watch = fields.watch || undefined
  if (watch !== undefined && !/^\d{1,9}(,\d{1,9}){3}$/.test(watch))
    throw new MalformedAnswer(`watch is ${shown(watch)}, not four counts`)
  const [total, bad, baseTotal, baseBad] = (watch ?? '').split(',').map(Number)
  return {
    ...(open !== undefined ? { openConnections: Number(open) } : {}),
    ...(watch !== undefined
      ? { watch: { total: total!, bad: bad!, baseTotal: baseTotal!, baseBad: baseBad! } }
      : {}),
    deployed: deployed === 'true',
    color: color('color'),
    previousColor: color('previous_color'),
    version,
    image,
    ...previousVersionOf(fields)
  }
}

/** previous_version, held to what a version can be (the server's state file says it). */
export function previousVersionOf(fields: Record<string, string>): { previousVersion?: string } {
  const v = fields.previous_version || undefined
  if (v === undefined) return {}
  if (versionProblem(v) && !/^sha-[0-9a-f]{7,40}$/.test(v))
    throw new MalformedAnswer(`previous_version is ${shown(v)}, which is not a version`)
  return { previousVersion: v }
}

/** A history row (tab-separated, as the script writes it), or undefined when it is not one. */
export function parseHistoryLine(text: string): HistoryEntry | undefined {
  const values = text.split('\t')
  if (values.length !== HISTORY_FIELDS.length) return undefined
  if (values.some((v) => v.length > 500 || hasControl(v))) return undefined
  return Object.fromEntries(
    HISTORY_FIELDS.map((f, i) => [f, values[i]!])
  ) as unknown as HistoryEntry
}

/** A `NAME EPOCH_MS` event, or undefined when the name is not declared or the time not a number. */
export function parseEvent(text: string): { name: EventName; ms: number } | undefined {
  const m = /^(\S+) (\d{1,16})$/.exec(text)
  if (!m || !(EVENTS as string[]).includes(m[1]!)) return undefined
  return { name: m[1] as EventName, ms: Number(m[2]) }
}
