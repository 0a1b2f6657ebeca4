// `npm run demo -- --hosts 3`: the blog series' largest setup on this machine. N app servers and a
// load balancer (scripts/hosts.sh: network namespaces with their own sshd, Docker engine and
// nginx), one run that prepares v2 on every app server and shows it at /green/ on the load
// balancer, a second run that promotes it (one switch for all), and a rollback, under load.
import { rmSync } from 'node:fs'
import path from 'node:path'
import {
  Load,
  SERVER_NGINX,
  commitAppVersion,
  fleetSetup,
  forgetRepository,
  headMessage,
  headSha,
  hostsScript,
  httpGet,
  makeWorkspace,
  runAction,
  services,
  servicesScript,
  testServers
} from './harness/index.mjs'

const APP = 'bgdemo-hosts'
const PORT = 18180

/**
 * @param {number} n app servers
 * @param {(s: string) => void} say
 * @param {(s: string) => void} phase
 */
export async function hostsDemo(n, say, phase) {
  phase(`1/6 Start Docker, a registry, sshd and nginx; then ${n} app servers and a load balancer`)
  servicesScript('up', say)
  const svc = services()
  hostsScript('up', n)
  const servers = testServers(svc)
  const { inputs, urls, apps } = fleetSetup(svc, servers, {
    app: APP,
    repository: `demo/${APP}`,
    port: PORT,
    shape: 'lb'
  })
  const lbUrl = urls[0] ?? ''
  const names = apps.map((s) => `${s.name} ${s.address}`)
  say(`
                         clients → ${lbUrl}
                                   |
        lb ${servers.lb.address}: nginx, upstream ${APP} = the serving color on every app server
        ${'  /  '.repeat(Math.min(n, 3))}
    ${names.map((x) => `[${x}: blue :${PORT + 1} green :${PORT + 2}]`).join('  ')}
`)
  await forgetRepository(svc.registry, `demo/${APP}`)
  const ws = path.join(svc.dir, 'demo-hosts-app')
  rmSync(ws, { recursive: true, force: true })
  makeWorkspace({ version: 'v1.0.0', startDelay: 1 }, 'release v1.0.0', ws)
  const previewFile = `${SERVER_NGINX}/conf.d/${APP}-preview.inc`
  /** @param {Record<string, string>} [extra] @param {object} [ctx] */
  const run = async (extra = {}, ctx = {}) => {
    const sha = headSha(ws)
    const r = await runAction(
      { ...inputs, 'nginx-preview-file': previewFile, ...extra },
      { workspace: ws, sha, event: { head_commit: { id: sha, message: headMessage(ws) } }, ...ctx }
    )
    for (const l of r.log.split('\n'))
      if (/^\d+\.\d+\.\d+\.\d+: (switched|prepared|aborted|undone|failed)/.test(l))
        say(`      ${l}`)
    if (r.code !== 0) {
      say(`\nThe action failed (exit ${r.code}). Its log:\n${r.log}`)
      process.exit(1)
    }
    return r
  }
  const each = async () =>
    (
      await Promise.all(
        apps.map(
          async (s) =>
            `${s.name} ${(await httpGet(`http://${s.address}:${PORT + 1}/`).catch(() => ({ body: '-' }))).body.trim()}/${(await httpGet(`http://${s.address}:${PORT + 2}/`).catch(() => ({ body: '-' }))).body.trim()}`
        )
      )
    ).join(', ')

  phase(`2/6 Deploy v1.0.0 to ${n} app servers at once`)
  await run()
  say(
    `    ${lbUrl} answers ${(await httpGet(lbUrl)).body.trim()}; blue/green on each server: ${await each()}`
  )

  phase('3/6 Prepare v2.0.0 everywhere (promote: false): it answers at /green/, / stays on v1.0.0')
  commitAppVersion(ws, { version: 'v2.0.0', startDelay: 1 })
  await run({ promote: 'false' })
  say(
    `    ${lbUrl} answers ${(await httpGet(lbUrl)).body.trim()}; ${lbUrl}green/ answers ${(await httpGet(`${lbUrl}green/`)).body.trim()}`
  )

  phase(
    '4/6 Promote v2.0.0 (a second run, building nothing) under load: one switch on the load balancer'
  )
  const load = await new Load().start(lbUrl, { keepalive: 12, fresh: 4, slow: 2 })
  const promoted = await run()
  say(
    `    ${lbUrl} answers ${(await httpGet(lbUrl)).body.trim()} (run ${(promoted.ms / 1000).toFixed(2)} s)`
  )

  phase('5/6 Roll back every server to v1.0.0, same load')
  const back = await run(
    { rollback: 'previous' },
    { eventName: 'workflow_dispatch', event: { inputs: { rollback: 'previous' } } }
  )
  await new Promise((r) => setTimeout(r, 500))
  const stats = await load.stop()
  say(
    `    ${lbUrl} answers ${(await httpGet(lbUrl)).body.trim()} (run ${(back.ms / 1000).toFixed(2)} s)`
  )

  phase('6/6 Report')
  const failed = stats.non2xx + stats.errors
  say(
    `    requests served    ${stats.ok.toLocaleString('en')} of ${stats.requests.toLocaleString('en')}`
  )
  say(
    `    requests failed    ${failed} (${stats.non2xx} non-2xx, ${stats.errors} connection errors)`
  )
  say(
    `    keep-alive races   ${stats.races} (nginx's reload on the load balancer; retried as browsers do)`
  )
  say(`    slow requests      ${stats.slowCompleted} of ${stats.slowStarted} completed`)
  say(`\n    The servers keep running — remove them with: npm run demo -- --down`)
  if (failed > 0 || stats.slowFailed > 0) {
    say('\nFAILED: requests failed during the promote or the rollback (see above).')
    process.exit(1)
  }
}

/** Remove the servers of the demo (and their namespaces). */
export function hostsDemoDown() {
  hostsScript('down')
}
