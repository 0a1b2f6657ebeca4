// `npm run demo -- --engine swarm`: the same action deploying to a Docker Swarm service. A
// single-node swarm on its own Docker engine (scripts/swarm.sh), 2 replicas behind nginx on the
// overlay network; deploy v1, deploy v2 under load, a version that never gets healthy (Swarm rolls
// it back and the run fails), and a rollback.
import { rmSync } from 'node:fs'
import path from 'node:path'
import {
  Load,
  commitAppVersion,
  forgetRepository,
  headMessage,
  headSha,
  httpGet,
  makeWorkspace,
  runAction,
  services,
  servicesScript,
  swarmEnv,
  swarmInputs,
  swarmScript,
  swarmSite
} from './harness/index.mjs'

const APP = 'bgdemo-swarm'
const PORT = 18201

/**
 * @param {(s: string) => void} say
 * @param {(s: string) => void} phase
 */
export async function swarmDemo(say, phase) {
  phase(
    '1/5 Start Docker, a registry, sshd and nginx; then a single-node swarm with nginx in front'
  )
  servicesScript('up', say)
  const svc = services()
  swarmScript('up')
  const env = swarmEnv(svc)
  swarmSite(env, APP, PORT)
  const url = `http://${env.BGD_SWARM_HOST}:${PORT}/`
  await forgetRepository(svc.registry, `demo/${APP}`)
  const ws = path.join(svc.dir, 'demo-swarm-app')
  rmSync(ws, { recursive: true, force: true })
  makeWorkspace({ version: 'v1.0.0', startDelay: 1 }, 'release v1.0.0', ws)
  const inputs = swarmInputs(svc, env, { app: APP, repository: `demo/${APP}` })
  /** @param {Record<string, string>} [extra] @param {object} [ctx] */
  const run = async (extra = {}, ctx = {}) => {
    const sha = headSha(ws)
    return runAction(
      { ...inputs, ...extra },
      { workspace: ws, sha, event: { head_commit: { id: sha, message: headMessage(ws) } }, ...ctx }
    )
  }
  const must = (/** @type {Awaited<ReturnType<typeof run>>} */ r) => {
    if (r.code === 0) return
    say(`\nThe action failed (exit ${r.code}). Its log:\n${r.log}`)
    process.exit(1)
  }

  phase('2/5 Deploy v1.0.0: the service is created with 2 replicas')
  must(await run())
  say(`    ${url} answers ${(await httpGet(url)).body.trim()}`)

  const load = await new Load().start(url, { keepalive: 12, fresh: 4, slow: 2 })
  phase('3/5 Deploy v2.0.0 under load: start-first, one task at a time')
  commitAppVersion(ws, { version: 'v2.0.0', startDelay: 1 })
  const second = await run()
  must(second)
  say(
    `    ${url} answers ${(await httpGet(url)).body.trim()} (run ${(second.ms / 1000).toFixed(2)} s)`
  )

  phase('4/5 Deploy v3.0.0, which never gets healthy: Swarm rolls it back, the run fails')
  commitAppVersion(ws, { version: 'v3.0.0', neverHealthy: true })
  const bad = await run()
  say(`    exit ${bad.code}: ${/Swarm rolled[^\n]*/.exec(bad.log)?.[0] ?? '(no reason found)'}`)
  say(`    ${url} answers ${(await httpGet(url)).body.trim()}`)

  phase('5/5 Roll back to the previous version')
  must(
    await run(
      { rollback: 'previous' },
      { eventName: 'workflow_dispatch', event: { inputs: { rollback: 'previous' } } }
    )
  )
  const stats = await load.stop()
  say(`    ${url} answers ${(await httpGet(url)).body.trim()}`)
  const failed = stats.non2xx + stats.errors
  say(
    `\n    requests served    ${stats.ok.toLocaleString('en')} of ${stats.requests.toLocaleString('en')}`
  )
  say(
    `    requests failed    ${failed} (${stats.non2xx} non-2xx, ${stats.errors} connection errors)`
  )
  say(`    slow requests      ${stats.slowCompleted} of ${stats.slowStarted} completed`)
  say('\n    The swarm keeps running — remove it with: npm run demo -- --down')
  if (bad.code === 0 || failed > 0 || stats.slowFailed > 0) {
    say('\nFAILED: see above.')
    process.exit(1)
  }
}
