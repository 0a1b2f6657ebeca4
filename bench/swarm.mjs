// The benchmark's swarm row: the same app and load, deployed by the same bundle to a Docker Swarm
// service (2 replicas, scripts/swarm.sh) through nginx on the overlay network, beside the ssh rows.
import path from 'node:path'
import { rmSync } from 'node:fs'
import {
  Load,
  commitAppVersion,
  firstServed,
  forgetRepository,
  headMessage,
  headSha,
  makeWorkspace,
  runAction,
  swarmEnv,
  swarmInputs,
  swarmScript,
  swarmSite
} from '../scripts/harness/index.mjs'
import { median, s2 } from './report.mjs'

const LOAD = { keepalive: 16, fresh: 4, slow: 2 }

/**
 * @param {import('../scripts/harness/index.mjs').Services} svc
 * @param {number} runs
 * @param {(s: string) => void} say
 */
export async function benchSwarm(svc, runs, say) {
  swarmScript('up')
  try {
    const env = swarmEnv(svc)
    const app = 'bgswarm'
    swarmSite(env, app, 18202)
    const url = `http://${env.BGD_SWARM_HOST}:18202/`
    await forgetRepository(svc.registry, 'bench/swarm')
    const wsDir = path.join(svc.dir, 'bench-swarm-app')
    rmSync(wsDir, { recursive: true, force: true })
    const ws = makeWorkspace({ version: 'v1.0.0', startDelay: 1 }, 'release v1.0.0', wsDir)
    const inputs = swarmInputs(svc, env, { app, repository: 'bench/swarm' })
    const deploy = async () => {
      const sha = headSha(ws)
      const run = await runAction(inputs, {
        workspace: ws,
        sha,
        event: { head_commit: { id: sha, message: headMessage(ws) } }
      })
      if (run.code !== 0)
        throw new Error(`swarm: the deploy failed (exit ${run.code}):\n${run.log}`)
      return run
    }
    await deploy()
    /** @type {{ toServingMs: number, totalMs: number, failed: number }[]} */
    const rows = []
    for (let i = 1; i <= runs; i++) {
      const next = `v1.${i}.0`
      commitAppVersion(ws, { version: next, startDelay: 1 })
      const load = await new Load().start(url, LOAD)
      const run = await deploy()
      await new Promise((r) => setTimeout(r, 300))
      const stats = await load.stop()
      const fig = {
        toServingMs: firstServed(stats, next, run.startedAt) - run.startedAt,
        totalMs: run.ms,
        failed: stats.non2xx + stats.errors + stats.slowFailed
      }
      rows.push(fig)
      say(
        `    ${'bg-deploy swarm'.padEnd(16)} ${next} serving after ${s2(fig.toServingMs)} s, total ${s2(fig.totalMs)} s, failed ${fig.failed}`
      )
    }
    return {
      rows,
      toServingMs: median(rows.map((r) => r.toServingMs)),
      totalMs: median(rows.map((r) => r.totalMs)),
      failed: rows.reduce((a, r) => a + r.failed, 0)
    }
  } finally {
    swarmScript('down')
  }
}

/**
 * The swarm row beside the ssh (reload) figures of the same run.
 * @param {number} runs
 * @param {{ toServingMs?: number, totalMs?: number }} ssh medians of bg-deploy (reload)
 * @param {number} sshFailed
 * @param {Awaited<ReturnType<typeof benchSwarm>>} swarm
 */
export function swarmTable(runs, ssh, sshFailed, swarm) {
  return [
    `| median of ${runs} | bg-deploy, engine ssh (reload) | bg-deploy, engine swarm (2 replicas) |`,
    '| --- | --- | --- |',
    `| new version serving, from the run's start | ${s2(ssh.toServingMs ?? NaN)} s | ${s2(swarm.toServingMs)} s |`,
    `| total run | ${s2(ssh.totalMs ?? NaN)} s | ${s2(swarm.totalMs)} s |`,
    `| failed requests, all ${runs} deploys | ${sshFailed} | ${swarm.failed} |`
  ].join('\n')
}
