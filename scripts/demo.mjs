#!/usr/bin/env node
// `npm run demo`: watch a real zero-downtime deploy on this machine in about a minute.
//
// Installs and starts (scripts/services.sh) a Docker engine, an image registry, sshd and nginx on
// loopback with throwaway SSH keys, builds a small sample app in two versions, and runs the real
// action bundle (node dist/index.js, as GitHub runs it) to deploy v1, deploy v2 while a load
// generator runs, and roll back. Prints a line per phase and a report at the end.
//
//   npm run demo             set up and run
//   npm run demo -- --hosts 3   the same on 3 app servers behind a load balancer (scripts/demo-hosts.mjs)
//   npm run demo -- --engine swarm   a Docker Swarm service instead (scripts/demo-swarm.mjs)
//   npm run demo -- --down   remove the demo app (and servers) and stop what the set-up started
//
// Ports: the site on 127.0.0.1:$BGD_DEMO_PORT (default 18080), blue and green on the next two.
import { spawnSync } from 'node:child_process'
import { existsSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import {
  FakeGitHub,
  appStateDir,
  removeApp,
  forgetRepository,
  Load,
  ROOT,
  commitAppVersion,
  firstServed,
  headMessage,
  headSha,
  httpGet,
  lastServed,
  makeWorkspace,
  runAction,
  loopbackInputs,
  services,
  servicesScript,
  swarmScript,
  timelineOf,
  writeSite
} from './harness/index.mjs'
import { hostsDemo, hostsDemoDown } from './demo-hosts.mjs'
import { swarmDemo } from './demo-swarm.mjs'

const APP = 'bgdemo'
const PORT = Number(process.env.BGD_DEMO_PORT ?? 18080)
const START_UP = 1 // seconds the sample app takes to start listening, like a small real service
const t00 = Date.now()

const say = (/** @type {string} */ s) => process.stdout.write(`${s}\n`)
const phase = (/** @type {string} */ s) =>
  say(`\n[${((Date.now() - t00) / 1000).toFixed(1).padStart(5)} s] ${s}`)
const secs = (/** @type {number} */ ms) => `${(ms / 1000).toFixed(2)} s`

/**
 * The demo's files and containers, by name, so --down and a re-run can remove them.
 * @param {import('./harness/index.mjs').Services} svc
 */
function demoPaths(svc) {
  return {
    ws: path.join(svc.dir, 'demo-app'),
    site: path.join(svc.nginxConfd, `${APP}-site.conf`),
    upstream: path.join(svc.nginxConfd, `${APP}-upstream.conf`),
    state: appStateDir(APP)
  }
}

/** @param {import('./harness/index.mjs').Services} svc */
async function removeDemo(svc) {
  await forgetRepository(svc.registry, `demo/${APP}`)
  const p = demoPaths(svc)
  removeApp(svc, APP, [p.ws])
  const images = spawnSync('docker', ['image', 'ls', '-q', `${svc.registry}/demo/${APP}`], {
    encoding: 'utf8'
  }).stdout
  const ids = [...new Set((images ?? '').split('\n').filter(Boolean))]
  if (ids.length > 0) spawnSync('docker', ['rmi', '-f', ...ids], { stdio: 'ignore' })
  spawnSync('nginx', ['-c', svc.nginxConf, '-s', 'reload'], { stdio: 'ignore' })
}

/**
 * The action's log, as progress lines: every group it opens (connect, build, release, each
 * server step), with the time since the run started.
 * @param {number} started
 */
function progress(started) {
  let buf = ''
  return (/** @type {string} */ chunk) => {
    buf += chunk
    const lines = buf.split('\n')
    buf = lines.pop() ?? ''
    for (const l of lines) {
      const m = /^::group::(.*)$/.exec(l) ?? /^::error(?: [^:]*)?::(.*)$/.exec(l)
      if (m) say(`      ${secs(Date.now() - started).padStart(7)}  ${m[1]}`)
    }
  }
}

/** @param {Awaited<ReturnType<typeof runAction>>} run */
function mustSucceed(run) {
  if (run.code === 0) return
  say(`\nThe action failed (exit ${run.code}). Its log:\n${run.log}`)
  process.exit(1)
}

async function main() {
  if (process.argv.includes('--down')) {
    hostsDemoDown()
    swarmScript('down')
    if (existsSync(path.join(process.env.BGD_SERVICES_DIR ?? '/tmp/bg-deploy-services', 'env')))
      await removeDemo(services())
    servicesScript('down', say)
    say('demo removed; services stopped')
    return
  }
  if (!existsSync(path.join(ROOT, 'dist/index.js'))) {
    say('dist/index.js is missing: run `npm ci` (and `npm run bundle` after changing src/).')
    process.exit(1)
  }

  const engine = process.argv.indexOf('--engine')
  if (engine >= 0) {
    if (process.argv[engine + 1] !== 'swarm') {
      say('--engine takes swarm (ssh is the plain demo): npm run demo -- --engine swarm')
      process.exit(1)
    }
    await swarmDemo(say, phase)
    say(`    Whole demo: ${secs(Date.now() - t00)}`)
    return
  }
  const hosts = process.argv.indexOf('--hosts')
  if (hosts >= 0) {
    const n = Number(process.argv[hosts + 1])
    if (!Number.isInteger(n) || n < 1 || n > 10) {
      say('--hosts takes a number of app servers from 1 to 10, e.g. npm run demo -- --hosts 3')
      process.exit(1)
    }
    await hostsDemo(n, say, phase)
    say(`    Whole demo: ${secs(Date.now() - t00)}`)
    return
  }

  phase('1/5 Install (if missing) and start Docker, a registry, sshd and nginx on loopback')
  servicesScript('up', say)
  const svc = services()
  await removeDemo(svc) // a previous demo's leftovers
  const p = demoPaths(svc)
  writeSite(svc, APP, PORT)
  const github = await new FakeGitHub().start()
  const inputs = loopbackInputs(svc, { app: APP, repository: `demo/${APP}`, port: PORT })
  /** @param {Record<string, string>} [extra] @param {object} [ctx] */
  const run = async (extra = {}, ctx = {}) => {
    const sha = headSha(p.ws)
    const started = Date.now()
    return runAction(
      { ...inputs, ...extra },
      {
        workspace: p.ws,
        sha,
        apiUrl: github.url,
        event: { head_commit: { id: sha, message: headMessage(p.ws) } },
        onLog: progress(started),
        ...ctx
      }
    )
  }

  phase(`2/5 Deploy v1.0.0 of a sample app (starts in ${START_UP} s) to a bare server`)
  makeWorkspace({ version: 'v1.0.0', startDelay: START_UP }, 'release v1.0.0', p.ws)
  const first = await run()
  mustSucceed(first)
  say(
    `    http://127.0.0.1:${PORT}/ answers: ${(await httpGet(`http://127.0.0.1:${PORT}/`)).body.trim()}`
  )

  phase('3/5 Deploy v2.0.0 while 16 keep-alive, 4 new-connection and 2 slow (3 s) clients load it')
  commitAppVersion(p.ws, { version: 'v2.0.0', startDelay: START_UP })
  const load = await new Load().start(`http://127.0.0.1:${PORT}/`)
  const deploy = await run()
  mustSucceed(deploy)
  // the job summary GitHub shows for this run (scripts/summary-picture.mjs draws it for docs/)
  writeFileSync(path.join(svc.dir, 'demo-summary.md'), deploy.summary)
  say(
    `    release ${deploy.outputs['release-url'] ?? ''} (on a loopback stand-in for GitHub's API)`
  )
  // the old color is stopped in the background after the run, holding the app's deploy lock
  const ended = Date.now()
  spawnSync('flock', ['-w', '60', path.join(p.state, 'lock'), 'true'])
  const stoppedAfter = Date.now() - ended
  say(`    the old container stopped ${secs(stoppedAfter)} after the run (in the background)`)

  phase('4/5 Roll back to the previous version (workflow_dispatch, rollback: previous), same load')
  const rollback = await run(
    { rollback: 'previous' },
    { eventName: 'workflow_dispatch', event: { inputs: { rollback: 'previous' } } }
  )
  mustSucceed(rollback)
  await new Promise((r) => setTimeout(r, 500))
  const stats = await load.stop()
  await github.stop()

  phase('5/5 Report')
  const d = timelineOf(deploy.outputs)
  const v2 = firstServed(stats, 'v2.0.0', deploy.startedAt)
  const v1again = firstServed(stats, 'v1.0.0', rollback.startedAt)
  const drained = lastServed(stats, 'v1.0.0', rollback.startedAt)
  const failed = stats.non2xx + stats.errors
  const rows = [
    [
      'requests served',
      `${stats.ok.toLocaleString('en')} of ${stats.requests.toLocaleString('en')}`
    ],
    ['requests failed', `${failed} (${stats.non2xx} non-2xx, ${stats.errors} connection errors)`],
    [
      'keep-alive races',
      `${stats.races} (a reused connection closed by nginx's reload; retried as browsers do)`
    ],
    [
      'slow requests',
      `${stats.slowCompleted} of ${stats.slowStarted} completed (3 s each, in flight across switches)`
    ],
    ['deploy v2.0.0', ''],
    [
      '  new version serving',
      `${secs(v2 - deploy.startedAt)} after the run started (build, push, release included); ${secs(v2 - (d.pull ?? NaN))} after the server started pulling`
    ],
    [
      '  app start-up',
      `${secs((d.healthy ?? NaN) - (d.started ?? NaN))} from docker run to healthy (the app sleeps ${START_UP} s)`
    ],
    [
      '  total deploy time',
      `${secs(deploy.ms)}; the old version answered its last in-flight request ${secs(drained - (d.switched ?? NaN))} after the switch`
    ],
    ['  old container stopped', `${secs(stoppedAfter)} after the run, in the background`],
    ['rollback to v1.0.0', ''],
    ['  previous version serving', `${secs(v1again - rollback.startedAt)} after the run started`],
    ['  total rollback time', secs(rollback.ms)]
  ]
  for (const [k, v] of rows) say(`    ${k.padEnd(28)} ${v}`)
  say(
    `\n    The site keeps running: curl http://127.0.0.1:${PORT}/ — remove it all with: npm run demo -- --down`
  )
  say(
    `    The v2.0.0 deploy's job summary, as GitHub shows it: ${path.join(svc.dir, 'demo-summary.md')}`
  )
  say(`    Whole demo: ${secs(Date.now() - t00)}`)
  if (failed > 0 || stats.slowFailed > 0) {
    say('\nFAILED: requests failed during the deploy or the rollback (see above).')
    process.exit(1)
  }
}

await main()
