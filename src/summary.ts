import * as core from '@actions/core'
import type { Outcome } from './run.js'
import { TIMELINE_LABELS } from './remote/protocol.js'
import { versionChange, type RunResult } from './report.js'

/**
 * Text for an HTML table cell: what the server sent is shown, never interpreted. Its line breaks
 * become `<br>`: the summary is one HTML block, which a blank line would end, and whatever followed
 * would render as markdown (links, images, headings).
 */
export function escapeHtml(text: string): string {
  return text
    .replace(
      /[&<>"']/g,
      (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!
    )
    .replace(/\r\n|\r|\n/g, '<br>')
}

/** The watch's figures: the new version's share of 5xx against the one it replaced. */
function watchCell(w: NonNullable<Outcome['watch']>): string {
  const share = (n: number, b: number) =>
    `${b} of ${n} answers 5xx (${n > 0 ? ((b * 100) / n).toFixed(1) : '0.0'} %)`
  return `passed: the new version ${share(w.total, w.bad)}; the version it replaced, just before the switch, ${share(w.baseTotal, w.baseBad)}`
}

function releaseCell(o: Outcome): string {
  if (!o.releaseUrl) return '(none)'
  const link = `<a href="${escapeHtml(o.releaseUrl)}">${escapeHtml(o.releaseUrl)}</a>`
  return o.releaseDraft ? `draft, not published: the new version did not serve. ${link}` : link
}

/** How long the runner's steps took: build, push, the draft release. */
export function durations(o: Outcome): string[] {
  const at = (name: string) => o.events.find((e) => e.name === name)?.ms
  const spans: [string, string, string][] = [
    ['build', 'build', 'built'],
    ['push', 'built', 'pushed'],
    ['draft release', 'release', 'drafted']
  ]
  return spans.flatMap(([label, from, to]) => {
    const a = at(from)
    const b = at(to)
    return a !== undefined && b !== undefined ? [`${label}: ${((b - a) / 1000).toFixed(2)} s`] : []
  })
}

/**
 * The timeline at a glance: a bar per step across the run's width, light up to the step before,
 * dark from there to this one (what the step took), so the long steps stand out.
 */
export function timelineBars(ms: number[], width = 30): string[] {
  const t0 = ms[0] ?? 0
  const span = Math.max(1, (ms[ms.length - 1] ?? t0) - t0)
  const at = (m: number) => Math.round(((m - t0) / span) * width)
  return ms.map((m, i) => {
    const from = i === 0 ? 0 : at(ms[i - 1]!)
    const to = Math.max(at(m), from + 1)
    return (
      '░'.repeat(from) +
      '█'.repeat(Math.min(to, width) - from) +
      '░'.repeat(width - Math.min(to, width))
    )
  })
}

/** What a failed run leaves serving, as far as the run knows it. */
export function servingNow(o: Outcome): string {
  if (o.serving) return `${o.serving.version} (${o.serving.color}), as the server's state says`
  if (o.servers?.length)
    return 'each server as listed under Servers: all switched or none (the previous version)'
  if (!o.events.some((e) => e.name === 'sent'))
    return 'unchanged: the run stopped before the server was asked to change anything'
  return 'unknown: the server did not say; its history is below'
}

/** The job summary; skipped outside a runner (no GITHUB_STEP_SUMMARY). */
export async function writeSummary(o: Outcome, result?: RunResult): Promise<void> {
  if (!process.env.GITHUB_STEP_SUMMARY) return
  const rows = [
    [
      { data: 'Field', header: true },
      { data: 'Value', header: true }
    ],
    ['Version', escapeHtml(o.version ? versionChange(o) : '(none)')],
    ...(result ? [['Result', escapeHtml(result)]] : []),
    ['Tags', o.tags.map(escapeHtml).join('<br>') || '(not pushed)'],
    ['Digest', escapeHtml(o.digest ?? '')],
    ['Release', releaseCell(o)],
    [
      'Deployed',
      o.deployed
        ? `yes: ${o.color ?? ''}${o.previousColor ? ` (was ${o.previousColor})` : ''}`
        : o.prepared
          ? `prepared as ${o.color ?? ''}, not switched to (promote: false)`
          : 'no'
    ],
    ...(o.previews ? [['Preview', o.previews.map(escapeHtml).join('<br>')]] : []),
    ...(o.openConnections
      ? [
          [
            'Long-lived connections',
            `${o.openConnections} still open on the old color when it stopped (drain-timeout)`
          ]
        ]
      : []),
    ...(o.watch ? [['Watch', watchCell(o.watch)]] : []),
    ...(o.error
      ? [
          ['Failed', escapeHtml(o.error)],
          ['Failed during', escapeHtml(o.failedPhase ?? '(before the run began)')],
          ['Serving now', escapeHtml(servingNow(o))]
        ]
      : [])
  ]
  const summary = core.summary.addHeading('bg-deploy', 2).addTable(rows)
  if (o.events.length > 0) {
    const t0 = o.events[0]!.ms
    const bars = timelineBars(o.events.map((e) => e.ms))
    summary.addHeading('Timeline', 3).addTable([
      [
        { data: 'step', header: true },
        { data: 'at', header: true },
        { data: '', header: true }
      ],
      ...o.events.map((e, i) => [
        escapeHtml(TIMELINE_LABELS[e.name]),
        `${((e.ms - t0) / 1000).toFixed(2)} s`,
        `<code>${bars[i]}</code>`
      ])
    ])
  }
  const took = durations(o)
  if (took.length > 0) summary.addRaw(`<p>${took.map(escapeHtml).join(' · ')}</p>`, true)
  if (o.servers && o.servers.length > 0) {
    summary.addHeading('Servers', 3).addTable([
      ['server', 'role', 'ended', 'color', 'version', 'error'].map((data) => ({
        data,
        header: true
      })),
      ...o.servers.map((s) =>
        [s.name, s.role, s.state, s.color ?? '', s.version ?? '', s.error ?? ''].map(escapeHtml)
      )
    ])
  }
  if (o.history && o.history.length > 0) {
    summary.addHeading('Recent deploys on the server', 3).addTable([
      ['time', 'version', 'action', 'result', 'who'].map((data) => ({ data, header: true })),
      ...o.history
        .slice()
        .reverse()
        .map((h) => [h.time, h.version, h.action, h.result, h.actor].map(escapeHtml))
    ])
  }
  await summary.write()
}
