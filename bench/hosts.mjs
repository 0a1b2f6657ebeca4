// The benchmark's comparison of one server with three: the same app, the same load, deployed by
// the same bundle to one server (its own nginx, the plain run) and to three app servers behind a
// load-balancer server (scripts/hosts.sh), in alternating order each round. Goal: three servers
// take at most 1.3 × the time of one.
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
export const HOSTS_GOAL = 1.3

/**
 * @param {import('../scripts/harness/index.mjs').Services} svc
 * @param {number} runs
 * @param {(s: string) => void} say
 */
export async function benchHosts(svc, runs, say) {
  hostsScript('up', 3)
  try {
    const servers = testServers(svc)
    const one = {
      label: 'one server',
      app: 'bghosts1',
      ...fleetSetup(svc, servers, {
        app: 'bghosts1',
        repository: 'bench/hosts1',
        port: 18110,
        shape: 'each',
        hosts: 1
      })
    }
    const three = {
      label: 'three servers',
      app: 'bghosts3',
      ...fleetSetup(svc, servers, {
        app: 'bghosts3',
        repository: 'bench/hosts3',
        port: 18120,
        shape: 'lb'
      })
    }
    for (const r of ['bench/hosts1', 'bench/hosts3']) await forgetRepository(svc.registry, r)
    const wsDir = path.join(svc.dir, 'bench-hosts-app')
    rmSync(wsDir, { recursive: true, force: true })
    const ws = makeWorkspace({ version: 'v1.0.0', startDelay: 1 }, 'release v1.0.0', wsDir)
    /** @param {typeof one} a */
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
    for (const a of [one, three]) await deploy(a)
    /** @type {Record<string, { toServingMs: number, totalMs: number, failed: number, races: number }[]>} */
    const rows = { one: [], three: [] }
    for (let i = 1; i <= runs; i++) {
      const next = `v1.${i}.0`
      commitAppVersion(ws, { version: next, startDelay: 1 })
      for (const [key, a] of i % 2
        ? [
            ['one', one],
            ['three', three]
          ]
        : [
            ['three', three],
            ['one', one]
          ]) {
        const load = await new Load().start(a.urls[0] ?? '', LOAD)
        const run = await deploy(/** @type {typeof one} */ (a))
        await new Promise((r) => setTimeout(r, 300))
        const stats = await load.stop()
        const fig = {
          toServingMs: firstServed(stats, next, run.startedAt) - run.startedAt,
          totalMs: run.ms,
          failed: stats.non2xx + stats.errors + stats.slowFailed,
          races: stats.races
        }
        rows[/** @type {string} */ (key)]?.push(fig)
        say(
          `    ${a.label.padEnd(16)} ${next} serving after ${s2(fig.toServingMs)} s, total ${s2(fig.totalMs)} s, failed ${fig.failed}, races ${fig.races}`
        )
      }
    }
    const med = (/** @type {'one' | 'three'} */ k, /** @type {'toServingMs' | 'totalMs'} */ f) =>
      median((rows[k] ?? []).map((r) => r[f]))
    const sum = (/** @type {'one' | 'three'} */ k, /** @type {'failed' | 'races'} */ f) =>
      (rows[k] ?? []).reduce((a, r) => a + r[f], 0)
    const ratio = med('three', 'totalMs') / med('one', 'totalMs')
    const table = [
      `| median of ${runs} | one server | three servers behind a load balancer | three / one |`,
      '| --- | --- | --- | --- |',
      `| new version serving, from the run's start | ${s2(med('one', 'toServingMs'))} s | ${s2(med('three', 'toServingMs'))} s | ${(med('three', 'toServingMs') / med('one', 'toServingMs')).toFixed(2)} |`,
      `| total run | ${s2(med('one', 'totalMs'))} s | ${s2(med('three', 'totalMs'))} s | ${ratio.toFixed(2)} (goal ≤ ${HOSTS_GOAL}: ${ratio <= HOSTS_GOAL ? 'met' : '**not met**'}) |`,
      `| failed requests / keep-alive races, all ${runs} deploys | ${sum('one', 'failed')} / ${sum('one', 'races')} | ${sum('three', 'failed')} / ${sum('three', 'races')} | |`
    ].join('\n')
    return {
      table,
      results: {
        load: LOAD,
        ratio,
        goal: HOSTS_GOAL,
        met: ratio <= HOSTS_GOAL,
        failed: sum('one', 'failed') + sum('three', 'failed'),
        rows
      }
    }
  } finally {
    hostsScript('down')
  }
}
