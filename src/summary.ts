import * as core from '@actions/core'
import type { Outcome } from './deploy.js'

/** The job summary; skipped outside a runner (no GITHUB_STEP_SUMMARY). */
export async function writeSummary(o: Outcome): Promise<void> {
  if (!process.env.GITHUB_STEP_SUMMARY) return
  const rows = [
    [
      { data: 'Field', header: true },
      { data: 'Value', header: true }
    ],
    ['Version', o.version ?? '(none)'],
    ['Tags', o.tags.join('<br>') || '(not pushed)'],
    ['Digest', o.digest ?? ''],
    ['Release', o.releaseUrl ? `<a href="${o.releaseUrl}">${o.releaseUrl}</a>` : '(none)'],
    ['Deployed', o.deployed ? `yes, ${o.color ?? ''}` : 'no']
  ]
  await core.summary.addHeading('bg-deploy', 2).addTable(rows).write()
}
