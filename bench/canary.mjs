// The benchmark's canary comparison: the same bad version (health stays 200, `/` answers 500 to
// half the requests from 3 s after it started) deployed under the same load to two sites on the
// loopback server, one with `canary: 10` and one without (the watch alone), in alternating order
// each round. Each load generator plays 1,000 users (canary-key: its X-Client header). Goal: the
// canary hurts at most about a tenth of what the same version hurts without it (CANARY_GOAL).
import { spawnSync } from 'node:child_process'
import { rmSync } from 'node:fs'
import path from 'node:path'
import {
  Load,
  commitAppVersion,
  forgetRepository,
  headMessage,
  headSha,
  loopbackInputs,
  makeWorkspace,
  removeApp,
  runAction,
  timelineOf,
  writeSite
} from '../scripts/harness/index.mjs'
import { median, s2 } from './report.mjs'

const LOAD = { keepalive: 16, fresh: 4, slow: 0, clientIds: 1000 }
export const CANARY_GOAL = 0.15
const WITH = { label: 'canary 10 %', app: 'bgcanary', port: 18150 }
const WITHOUT = { label: 'no canary', app: 'bgnocanary', port: 18160 }

/**
 * @param {import('../scripts/harness/index.mjs').Services} svc
 * @param {number} runs
 * @param {(s: string) => void} say
 */
export async function benchCanary(svc, runs, say) {
  await forgetRepository(svc.registry, 'bench/canary')
  for (const a of [WITH, WITHOUT]) removeApp(svc, a.app, [])
  const wsDir = path.join(svc.dir, 'bench-canary-app')
  rmSync(wsDir, { recursive: true, force: true })
  // every version answers / through the same script (the good ones never fail), so the bad one is
  // no slower than the one it replaces: with closed-loop clients, a slower version gets fewer
  // requests and so fewer failures, which would flatter the run without canary
  const SAME = { after: 0, inTen: 0 }
  const ws = makeWorkspace(
    { version: 'v1.0.0', startDelay: 1, failsLater: SAME },
    'release v1.0.0',
    wsDir
  )
  /** @param {typeof WITH} a */
  const inputsOf = (a) => ({
    ...loopbackInputs(svc, { app: a.app, repository: 'bench/canary', port: a.port }),
    'create-release': 'false',
    'canary-key': '$http_x_client',
    watch: '20',
    ...(a === WITH ? { canary: '10', 'canary-step-time': '20' } : {})
  })
  /** @param {typeof WITH} a */
  const deploy = async (a) => {
    const sha = headSha(ws)
    const run = await runAction(inputsOf(a), {
      workspace: ws,
      sha,
      event: { head_commit: { id: sha, message: headMessage(ws) } }
    })
    spawnSync('flock', ['-w', '60', `/var/lib/bg-deploy/${a.app}/lock`, 'true'])
    return run
  }
  try {
    for (const a of [WITH, WITHOUT]) {
      writeSite(svc, a.app, a.port)
      const run = await deploy(a)
      if (run.code !== 0)
        throw new Error(`${a.label}: v1.0.0 failed (exit ${run.code}):\n${run.log}`)
    }
    /** @type {Record<string, { failed: number, clients: number, requests: number, backMs: number }[]>} */
    const rows = { with: [], without: [] }
    for (let i = 1; i <= runs; i++) {
      // a good version both serve, then the bad one after it
      const good = `v1.${i}.0`
      const bad = `v1.${i}.1`
      commitAppVersion(ws, { version: good, startDelay: 1, failsLater: SAME })
      for (const a of [WITH, WITHOUT]) {
        const run = await deploy(a)
        if (run.code !== 0)
          throw new Error(`${a.label}: ${good} failed (exit ${run.code}):\n${run.log}`)
      }
      commitAppVersion(ws, { version: bad, startDelay: 1, failsLater: { after: 3, inTen: 5 } })
      for (const [key, a] of i % 2
        ? [
            ['with', WITH],
            ['without', WITHOUT]
          ]
        : [
            ['without', WITHOUT],
            ['with', WITH]
          ]) {
        const a_ = /** @type {typeof WITH} */ (a)
        const load = await new Load().start(`http://127.0.0.1:${a_.port}/`, LOAD)
        const run = await deploy(a_)
        await new Promise((r) => setTimeout(r, 300))
        const stats = await load.stop()
        const back = /(the canary|the watch window) switched back from/.exec(run.log)
        if (run.code === 0 || !back)
          throw new Error(
            `${a_.label}: ${bad} was not switched back (exit ${run.code}):\n${run.log}`
          )
        const tl = timelineOf(run.outputs)
        // the load's failed answers over time: the first, and the last before it ended
        const failedAt = stats.timeline.filter(([, c]) => c.failed).map(([t]) => stats.t0 + t)
        const fig = {
          failed: stats.non2xx + stats.errors,
          clients: stats.failedClients,
          requests: stats.requests,
          // from the first failed answer to the switch back, and to the last failed answer
          backMs: (tl.reverted ?? NaN) - (failedAt[0] ?? NaN),
          lastMs: (failedAt.at(-1) ?? NaN) - (failedAt[0] ?? NaN)
        }
        rows[/** @type {string} */ (key)]?.push(fig)
        say(
          `    ${a_.label.padEnd(16)} ${bad} switched back by ${back[1]} ${s2(fig.backMs)} s after the first failed answer (the last ${s2(fig.lastMs)} s after it): ${fig.failed} failed of ${fig.requests} requests, ${fig.clients} of ${LOAD.clientIds} users hurt`
        )
      }
    }
    const med = (/** @type {'with' | 'without'} */ k, /** @type {'failed' | 'clients'} */ f) =>
      median((rows[k] ?? []).map((r) => r[f]))
    const ratio = med('with', 'failed') / med('without', 'failed')
    const users = med('with', 'clients') / med('without', 'clients')
    const met = ratio <= CANARY_GOAL
    const table = [
      `| a bad version (half of \`/\` 500 from 3 s after its start), median of ${runs} | no canary (watch) | canary 10 % | canary / none |`,
      '| --- | --- | --- | --- |',
      `| failed requests (whole run) | ${med('without', 'failed')} | ${med('with', 'failed')} | ${ratio.toFixed(2)} (goal ≤ ${CANARY_GOAL}: ${met ? 'met' : '**not met**'}) |`,
      `| users hurt (of ${LOAD.clientIds}) | ${med('without', 'clients')} | ${med('with', 'clients')} | ${users.toFixed(2)} |`
    ].join('\n')
    return { table, results: { load: LOAD, ratio, users, goal: CANARY_GOAL, met, rows } }
  } finally {
    for (const a of [WITH, WITHOUT]) removeApp(svc, a.app, [])
  }
}

// `npm run bench:canary [-- --runs 3] [--docs]`: this comparison alone, on the services already up
// (scripts/services.sh up); --docs puts the table into docs/watch.md.
if (import.meta.url === `file://${process.argv[1]}`) {
  const { services } = await import('../scripts/harness/index.mjs')
  const i = process.argv.indexOf('--runs')
  const runs = i > 0 ? Number(process.argv[i + 1]) : 3
  const r = await benchCanary(services(), runs, (s) => process.stdout.write(`${s}\n`))
  process.stdout.write(`\n${r.table}\n`)
  if (process.argv.includes('--docs')) {
    const { updateMarkers } = await import('./report.mjs')
    const { ROOT } = await import('../scripts/harness/index.mjs')
    await updateMarkers(path.join(ROOT, 'docs/watch.md'), 'canary', r.table)
  }
}
