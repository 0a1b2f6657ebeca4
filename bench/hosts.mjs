// The benchmark's comparison of one server with several: the same app, the same load, deployed by
// the same bundle to one server (its own nginx, the plain run) and to three and ten app servers
// behind a load-balancer server (scripts/hosts.sh), in rotating order each round. Goals: three
// servers serve the new version, and end the run, within 1.2 × the time of one; ten within 1.5 ×.
import { spawnSync } from 'node:child_process'
import { existsSync, rmSync } from 'node:fs'
import path from 'node:path'
import {
  Load,
  commitAppVersion,
  firstServed,
  fleetSetup,
  forgetRepository,
  headMessage,
  headSha,
  hostsScript,
  makeWorkspace,
  runAction,
  testServers
} from '../scripts/harness/index.mjs'
import { median, s2 } from './report.mjs'

const LOAD = { keepalive: 12, fresh: 4, slow: 2 }
/** servers behind the load balancer → the goal of their time over one server's */
export const HOSTS_GOALS = { 3: 1.2, 10: 1.5 }
const NAMES = { 1: 'one server', 3: 'three servers', 10: 'ten servers' }
// each fleet's site port (its colors on the next two), apart from the single-server bench's
const PORTS = [18110, 18120, 18160, 18170, 18180]

/**
 * @param {import('../scripts/harness/index.mjs').Services} svc
 * @param {number} runs
 * @param {(s: string) => void} say
 * @param {number[]} [sizes] the fleets to compare, the first one server
 */
export async function benchHosts(svc, runs, say, sizes = [1, 3, 10]) {
  const largest = Math.max(...sizes)
  hostsScript('up', largest)
  try {
    const servers = testServers(svc)
    const wsDir = path.join(svc.dir, 'bench-hosts-app')
    rmSync(wsDir, { recursive: true, force: true })
    const ws = makeWorkspace({ version: 'v1.0.0', startDelay: 1 }, 'release v1.0.0', wsDir)
    /** @param {{ label: string, app: string, inputs: Record<string, string>, apps: { dir: string }[] }} a */
    const deploy = async (a) => {
      const sha = headSha(ws)
      const run = await runAction(a.inputs, {
        workspace: ws,
        sha,
        event: { head_commit: { id: sha, message: headMessage(ws) } }
      })
      if (run.code !== 0)
        throw new Error(`${a.label}: the deploy failed (exit ${run.code}):\n${run.log}`)
      // the old color stops in the background, holding each server's lock
      for (const s of a.apps) {
        const lock = path.join(s.dir, 'state', a.app, 'lock')
        if (existsSync(lock)) spawnSync('flock', ['-w', '60', lock, 'true'])
      }
      return run
    }
    // each fleet's site goes onto the load balancer's nginx just before its first deploy: a site
    // naming an upstream not written yet would fail every other fleet's nginx -t
    const fleets = []
    for (const [i, n] of sizes.entries()) {
      const app = `bghosts${n}`
      const repository = `bench/hosts${n}`
      await forgetRepository(svc.registry, repository)
      const fleet = {
        n,
        label: NAMES[/** @type {1 | 3 | 10} */ (n)] ?? `${n} servers`,
        app,
        ...fleetSetup(svc, servers, {
          app,
          repository,
          port: PORTS[i] ?? 18200 + 10 * i,
          shape: n === 1 ? 'each' : 'lb',
          hosts: n
        })
      }
      await deploy(fleet)
      fleets.push(fleet)
    }
    /** @type {Map<number, { toServingMs: number, totalMs: number, failed: number, races: number }[]>} */
    const rows = new Map(sizes.map((n) => [n, []]))
    for (let i = 1; i <= runs; i++) {
      const next = `v1.${i}.0`
      commitAppVersion(ws, { version: next, startDelay: 1 })
      // each fleet goes first in turn, so none always meets a machine warmed by the others
      const order = fleets.map((_, k) => fleets[(k + i - 1) % fleets.length])
      for (const a of order) {
        const load = await new Load().start(a.urls[0] ?? '', LOAD)
        const run = await deploy(a)
        await new Promise((r) => setTimeout(r, 300))
        const stats = await load.stop()
        const fig = {
          toServingMs: firstServed(stats, next, run.startedAt) - run.startedAt,
          totalMs: run.ms,
          failed: stats.non2xx + stats.errors + stats.slowFailed,
          races: stats.races
        }
        rows.get(a.n)?.push(fig)
        say(
          `    ${a.label.padEnd(16)} ${next} serving after ${s2(fig.toServingMs)} s, total ${s2(fig.totalMs)} s, failed ${fig.failed}, races ${fig.races}`
        )
      }
    }
    return hostsReport(runs, sizes, rows)
  } finally {
    hostsScript('down')
  }
}

/**
 * The table and the results: each fleet's medians, and its ratios to one server with the goal.
 * @param {number} runs
 * @param {number[]} sizes
 * @param {Map<number, { toServingMs: number, totalMs: number, failed: number, races: number }[]>} rows
 */
export function hostsReport(runs, sizes, rows) {
  const med = (/** @type {number} */ n, /** @type {'toServingMs' | 'totalMs'} */ f) =>
    median((rows.get(n) ?? []).map((r) => r[f]))
  const sum = (/** @type {number} */ n, /** @type {'failed' | 'races'} */ f) =>
    (rows.get(n) ?? []).reduce((a, r) => a + r[f], 0)
  const [base, ...more] = sizes
  const b = /** @type {number} */ (base)
  const label = (/** @type {number} */ n) =>
    n === 1
      ? 'one server'
      : `${NAMES[/** @type {3 | 10} */ (n)] ?? `${n} servers`} behind a load balancer`
  /** @type {{ servers: number, figure: string, ratio: number, goal: number, met: boolean }[]} */
  const ratios = []
  const ratioCell = (/** @type {number} */ n, /** @type {'toServingMs' | 'totalMs'} */ f) => {
    const ratio = med(n, f) / med(b, f)
    const goal = HOSTS_GOALS[/** @type {3 | 10} */ (n)]
    if (goal === undefined) return ratio.toFixed(2)
    const met = ratio <= goal
    ratios.push({ servers: n, figure: f, ratio, goal, met })
    return `${ratio.toFixed(2)} (goal ≤ ${goal}: ${met ? 'met' : '**not met**'})`
  }
  const head = [`median of ${runs}`, ...sizes.map(label), ...more.map((n) => `${n} / 1`)]
  const row = (/** @type {string} */ what, /** @type {'toServingMs' | 'totalMs'} */ f) => [
    what,
    ...sizes.map((n) => `${s2(med(n, f))} s`),
    ...more.map((n) => ratioCell(n, f))
  ]
  const lines = [
    head,
    head.map(() => '---'),
    row("new version serving, from the run's start", 'toServingMs'),
    row('total run', 'totalMs'),
    [
      `failed requests / keep-alive races, all ${runs} deploys`,
      ...sizes.map((n) => `${sum(n, 'failed')} / ${sum(n, 'races')}`),
      ...more.map(() => '')
    ]
  ]
  const table = lines.map((l) => `| ${l.join(' | ')} |`).join('\n')
  return {
    table,
    results: {
      load: LOAD,
      sizes,
      ratios,
      met: ratios.every((r) => r.met),
      failed: sizes.reduce((a, n) => a + sum(n, 'failed'), 0),
      rows: Object.fromEntries(rows)
    }
  }
}
