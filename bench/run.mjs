#!/usr/bin/env node
// `npm run bench`: bg-deploy against the classic blog script (bench/classic-deploy.sh, the
// baseline), side by side on the same loopback server, same app image, same load.
//
//   npm run bench [-- --runs 5] [--out bench] [--no-readme] [--busy] [--only single]
//        [--github-latency 150] [--servers 1,3,10]
//
// Each round: bg-deploy deploys a new version (the real bundle, run as GitHub runs it), the classic
// script deploys that same image to its own site, then bg-deploy rolls back. A load generator
// (16 keep-alive + 4 new-connection clients + 2 with a 3 s request in flight) runs through each.
// bg-deploy (reload) releases too, against a loopback GitHub that answers after --github-latency
// ms, as the API does from a runner. --busy runs all of it while a second load generator (32
// keep-alive + 8 new-connection clients on the classic site) keeps the machine busy; --only single
// leaves out the several-servers and Swarm rows.
// Writes <out>/results.json (results-busy.json) and <out>/chart.svg, prints a table with medians,
// the critical path and the targets, and (unless --no-readme) puts them into docs/benchmark.md between the
// bench markers (bench-busy for --busy), and the other tables into their pages. It exits non-zero when a figure could not be measured
// (the new version never seen serving) or a site answers from something other than its deploy.
import { execFileSync, spawn, spawnSync } from 'node:child_process'
import { connect, createServer } from 'node:net'
import { cpus, totalmem } from 'node:os'
import { mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import {
  FakeGitHub,
  Load,
  ROOT,
  commitAppVersion,
  firstServed,
  headMessage,
  headSha,
  httpGet,
  lastServed,
  loopbackInputs,
  makeWorkspace,
  runAction,
  services,
  servicesScript,
  sleep,
  timelineOf,
  writeSite,
  forgetRepository,
  removeApp
} from '../scripts/harness/index.mjs'
import { chart } from './chart.mjs'
import { benchCanary } from './canary.mjs'
import { benchHosts } from './hosts.mjs'
import { benchSwarm, swarmTable } from './swarm.mjs'
import { median, report, s2, updateMarkers, updateDocs, writeFormatted } from './report.mjs'

const argv = process.argv.slice(2)
const opt = (/** @type {string} */ name, /** @type {string} */ dflt) => {
  const i = argv.indexOf(`--${name}`)
  return i >= 0 && argv[i + 1] ? argv[i + 1] : dflt
}
const RUNS = Number(opt('runs', '5'))
const OUT = path.resolve(opt('out', path.join(ROOT, 'bench')))
const README = !argv.includes('--no-readme')
const BUSY = argv.includes('--busy')
const ONLY_SINGLE = opt('only', '') === 'single'
// the fleets of the several-servers comparison: one server, then app servers behind a load balancer
const SERVERS = opt('servers', '1,3,10').split(',').map(Number)
const GITHUB_LATENCY = Number(opt('github-latency', '150'))
const START_UP = 1 // seconds the sample app sleeps before it listens
const BG = { app: 'bgbench', port: 18090 }
const DNAT = { app: 'bgdnat', port: 18100 }
const CLASSIC = { app: 'classic', port: 18095 }
const WARM = { app: 'bgwarm', port: 18130 }
// a deploy with a pre-switch task that does nothing (`true`): what the task's one-off container
// adds to the critical path
const TASK = { app: 'bgtask', port: 18140 }
const LOAD = { keepalive: 16, fresh: 4, slow: 2 }

const say = (/** @type {string} */ s) => process.stdout.write(`${s}\n`)

/** @param {import('../scripts/harness/index.mjs').Services} svc */
function machine(svc) {
  const v = (/** @type {string} */ cmd, /** @type {string[]} */ args) => {
    const r = spawnSync(cmd, args, { encoding: 'utf8' })
    return `${r.stdout ?? ''}${r.stderr ?? ''}`.trim().split('\n')[0] ?? ''
  }
  return {
    date: new Date().toISOString(),
    kernel: v('uname', ['-sr']),
    cpu: `${cpus().length} × ${cpus()[0]?.model ?? 'unknown'}`,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    docker: v('docker', ['version', '--format', '{{.Server.Version}}']),
    nginx: v('nginx', ['-v']).replace('nginx version: ', ''),
    ssh: `sshd on ${svc.sshHost}:${svc.sshPort}`
  }
}

/** @param {string} app */

/**
 * Time from spawning `node dist/index.js` to its first network call (the SSH connect, which the
 * action makes before anything else), against a TCP listener that records the moment and hangs up.
 * @param {string} ws
 * @param {Record<string, string>} inputs
 */
async function startupMs(ws, inputs) {
  /** @type {number[]} */
  const accepted = []
  const server = createServer((sock) => {
    accepted.push(Date.now())
    sock.destroy()
  })
  await new Promise((r) => server.listen(0, '127.0.0.1', () => r(undefined)))
  const port = /** @type {import('node:net').AddressInfo} */ (server.address()).port
  const runs = []
  for (let i = 0; i < 10; i++) {
    accepted.length = 0
    // as a push runs it (the commit's message in the event): the image starts building, then the
    // SSH connect is the first network call (refused here, so that build is stopped)
    const sha = headSha(ws)
    // no release: the run ends at once when SSH fails, instead of retrying GitHub for ~30 s
    const run = await runAction(
      { ...inputs, port: String(port), 'create-release': 'false' },
      { workspace: ws, sha, event: { head_commit: { id: sha, message: headMessage(ws) } } }
    )
    runs.push(accepted.length ? (accepted[0] ?? NaN) - run.startedAt : NaN)
  }
  server.close()
  return runs
}

/**
 * The floor of a rollback from the click on this machine, each part alone (median of 10): node's
 * own start (`node -e 0`), an SSH handshake to the server (TCP, key exchange, host key, key auth;
 * in a process already running), one SSH command over that connection (`true`: the session and the
 * user's login shell), and one `nginx -s reload`.
 * @param {Record<string, string>} inputs the bench's action inputs (host, port, user, key, reload)
 */
async function floorMs(inputs) {
  const { NodeSSH } = await import('node-ssh')
  const times = async (/** @type {() => unknown} */ f) => {
    const out = []
    for (let i = 0; i < 10; i++) {
      const t = performance.now()
      await f()
      out.push(performance.now() - t)
    }
    return Math.round(median(out))
  }
  const nodeStart = await times(() => spawnSync(process.execPath, ['-e', '0']))
  // as src/ssh.ts connects: its own socket with TCP_NODELAY
  const login = () => ({
    sock: connect({ host: inputs.host, port: Number(inputs.port), noDelay: true }),
    username: inputs.username,
    privateKey: inputs['ssh-key']
  })
  const handshake = await times(async () => (await new NodeSSH().connect(login())).dispose())
  const ssh = await new NodeSSH().connect(login())
  const exec = await times(() => ssh.execCommand('true'))
  ssh.dispose()
  const [cmd = 'nginx', ...args] = (inputs['nginx-reload-command'] ?? '').split(' ')
  const reload = await times(() => spawnSync(cmd, args))
  return { nodeStart, handshake, exec, reload, sum: nodeStart + handshake + exec + reload }
}

/**
 * The app's own readiness: `docker run` of the image until its first 2xx, polled every 10 ms.
 * @param {string} image
 */
async function readinessMs(image) {
  const port = 18099
  const out = []
  for (let i = 0; i < 5; i++) {
    const t = Date.now()
    execFileSync(
      'docker',
      ['run', '-d', '--init', '--name', 'bench-readiness', '-p', `127.0.0.1:${port}:8080`, image],
      { stdio: 'ignore' }
    )
    for (;;) {
      const ok = await httpGet(`http://127.0.0.1:${port}/health`, 1000).then(
        (r) => r.status >= 200 && r.status < 300,
        () => false
      )
      if (ok) break
      if (Date.now() - t > 30_000) throw new Error(`${image} did not become ready in 30 s`)
      await sleep(10)
    }
    out.push(Date.now() - t)
    execFileSync('docker', ['rm', '-f', 'bench-readiness'], { stdio: 'ignore' })
  }
  return out
}

/**
 * Run `fn` with the load generator on `url`, 0.5 s of load before and after.
 * @template T
 * @param {string} url
 * @param {() => Promise<T>} fn
 */
async function underLoad(url, fn) {
  const load = await new Load().start(url, LOAD)
  await sleep(500)
  const result = await fn()
  await sleep(500)
  return { result, stats: await load.stop() }
}

/**
 * The classic script over SSH, as blog posts run it (`ssh host 'bash -s' < script`), host key
 * unchecked as they do.
 * @param {import('../scripts/harness/index.mjs').Services} svc
 * @param {string} image
 */
function runClassic(svc, image) {
  return new Promise((resolve) => {
    const startedAt = Date.now()
    const child = spawn(
      'ssh',
      [
        '-i',
        svc.sshKeyFile,
        '-p',
        String(svc.sshPort),
        '-o',
        'StrictHostKeyChecking=no',
        '-o',
        'UserKnownHostsFile=/dev/null',
        '-o',
        'LogLevel=ERROR',
        `${svc.sshUser}@${svc.sshHost}`,
        'bash',
        '-s',
        '--',
        CLASSIC.app,
        image,
        String(CLASSIC.port + 1),
        String(CLASSIC.port + 2),
        path.join(svc.nginxConfd, `${CLASSIC.app}-upstream.conf`),
        svc.nginxConf
      ],
      { stdio: ['pipe', 'pipe', 'pipe'] }
    )
    let log = ''
    child.stdout.on('data', (d) => (log += d))
    child.stderr.on('data', (d) => (log += d))
    child.stdin.end(readFileSync(path.join(ROOT, 'bench/classic-deploy.sh')))
    child.on('close', (code) => {
      const at = (/** @type {string} */ k) =>
        Number(new RegExp(`^bench-${k} (\\d+)$`, 'm').exec(log)?.[1] ?? NaN)
      resolve({
        code,
        log,
        startedAt,
        ms: Date.now() - startedAt,
        serverStart: at('start'),
        serverEnd: at('end')
      })
    })
  })
}

/**
 * One run's figures from the load it ran under.
 * @param {import('../scripts/harness/index.mjs').LoadStats} stats
 * @param {{ startedAt: number, ms: number }} run
 * @param {string} next the version expected after the run
 * @param {string} prev the version before it
 * @param {number} serverStart epoch ms the server-side work began
 * @param {number} serverEnd epoch ms it ended
 * @param {number} [switched] epoch ms of the switch, when known
 */
function figures(stats, run, next, prev, serverStart, serverEnd, switched) {
  const serving = firstServed(stats, next, run.startedAt)
  const oldLast = lastServed(stats, prev)
  const drain = switched !== undefined && oldLast > switched ? oldLast - switched : 0
  return {
    toServingMs: serving - run.startedAt,
    serverToServingMs: serving - serverStart,
    totalMs: run.ms,
    /** @type {number | undefined} bg-deploy: after the run, until the old color had stopped */
    stoppedAfterMs: /** @type {{ settledMs?: number }} */ (run).settledMs,
    serverTotalMs: serverEnd - serverStart,
    drainMs: drain,
    requests: stats.requests,
    failed: stats.non2xx + stats.errors,
    non2xx: stats.non2xx,
    connectionErrors: stats.errors,
    races: stats.races,
    slowFailed: stats.slowFailed,
    /** the first failures, `t` in ms from the run's start */
    failures: stats.failures.map((f) => ({
      .../** @type {object} */ (f),
      t: /** @type {{ t: number }} */ (f).t + stats.t0 - run.startedAt
    }))
  }
}

/**
 * Stop the bench with the reason when a figure could not be measured.
 * @param {string} what
 * @param {Record<string, number>} values
 */
function measured(what, values) {
  const missing = Object.entries(values).filter(([, v]) => !Number.isFinite(v))
  if (missing.length)
    throw new Error(
      `${what}: ${missing.map(([k]) => k).join(', ')} could not be measured (the new version was never seen serving through the site, or a step is missing from the timeline). Is another server answering on the site's port?`
    )
}

/**
 * The critical path of a bg-deploy deploy from its timeline: each phase's duration in ms.
 * @param {Record<string, number>} tl
 * @param {number} startedAt
 * @param {number} serving epoch ms the new version was first seen serving
 */
function phasesOf(tl, startedAt, serving) {
  const d = (/** @type {number | undefined} */ a, /** @type {number | undefined} */ b) =>
    (b ?? NaN) - (a ?? NaN)
  return {
    beforeBuildMs: d(startedAt, tl.build),
    buildPushMs: d(tl.build, tl.pushed),
    draftMs: d(tl.build, tl.drafted),
    scriptBeganMs: d(startedAt, tl.begin),
    execMs: d(tl.sent, tl.begin),
    pullMs: d(tl.pull, tl.pulled),
    runMs: d(tl.pulled, tl.started),
    healthMs: d(tl.started, tl.healthy),
    switchMs: d(tl.healthy, tl.switched),
    seenMs: d(tl.switched, serving)
  }
}

/**
 * @typedef {object} Bench
 * @property {import('../scripts/harness/index.mjs').Services} svc
 * @property {FakeGitHub} github
 * @property {ReturnType<typeof machine>} facts
 * @property {Record<string, string>} inputs the inputs of BG
 * @property {string} ws the sample app's workspace
 * @property {(a: { app: string, port: number }, extra?: Record<string, string>, ctx?: object) => Promise<any>} deploy
 *   a bg-deploy run, then the wait until the old color has stopped in the background (lock free)
 * @property {(v: string) => string} image
 * @property {number[]} startup
 * @property {Awaited<ReturnType<typeof floorMs>>} floor
 * @property {number} bundleBytes
 * @property {number[]} readiness
 * @property {number} ready
 * @property {() => void} stopBusy
 */

/** @param {{ code: number | null, log: string }} r @param {string} what */
function must(r, what) {
  if (r.code !== 0) throw new Error(`${what} failed (exit ${r.code}):\n${r.log}`)
}

/**
 * The services, a clean start (every app and its site anew, the registry without bench/app's
 * versions), the action's own start-up, v1.0.0 on every site, the busy load if asked, and the
 * app's own readiness.
 * @returns {Promise<Bench>}
 */
async function setup() {
  say('==> services (scripts/services.sh up)')
  servicesScript('up', say)
  const svc = services()
  const github = await new FakeGitHub().start()
  github.latencyMs = GITHUB_LATENCY
  /** @type {import('node:child_process').ChildProcess | undefined} */
  let busy
  process.on('exit', () => busy?.kill('SIGTERM'))
  mkdirSync(OUT, { recursive: true })
  const facts = machine(svc)
  say(
    `==> ${facts.date} · ${facts.cpu} · ${facts.memoryGiB} GiB · ${facts.kernel} · node ${facts.node} · docker ${facts.docker} · nginx ${facts.nginx}`
  )

  await forgetRepository(svc.registry, 'bench/app')
  for (const a of [BG, DNAT, CLASSIC, WARM, TASK])
    removeApp(svc, a.app, [`/tmp/${a.app}.current_color`])
  // a site is written just before its app's first deploy: nginx -t refuses a site whose upstream
  // does not exist yet
  writeSite(svc, CLASSIC.app, CLASSIC.port)
  writeFileSync(
    path.join(svc.nginxConfd, `${CLASSIC.app}-upstream.conf`),
    `upstream ${CLASSIC.app} {\n    server 127.0.0.1:${CLASSIC.port + 1};\n}\n`
  )
  /** @param {{ app: string, port: number }} a */
  const inputsOf = (a) => ({
    ...loopbackInputs(svc, { app: a.app, repository: 'bench/app', port: a.port }),
    // bg-deploy (reload) makes the release as a user's run does; the others deploy its image
    'create-release': a === BG ? 'true' : 'false',
    'github-token': 'ghs_bench',
    'switch-mode': a === DNAT ? 'dnat' : 'reload',
    'live-port': String(a.port + 3),
    ...(a === TASK ? { 'pre-switch-command': 'true' } : {})
  })
  const inputs = inputsOf(BG)
  const wsDir = path.join(svc.dir, 'bench-app')
  rmSync(wsDir, { recursive: true, force: true })
  const ws = makeWorkspace({ version: 'v1.0.0', startDelay: START_UP }, 'release v1.0.0', wsDir)
  /** @type {Bench['deploy']} */
  const deploy = async (a, extra = {}, ctx = {}) => {
    const sha = headSha(ws)
    const run = await runAction(
      { ...inputsOf(a), ...extra },
      {
        workspace: ws,
        sha,
        event: { head_commit: { id: sha, message: headMessage(ws) } },
        apiUrl: github.url,
        ...ctx
      }
    )
    const end = Date.now()
    spawnSync('flock', ['-w', '60', `/var/lib/bg-deploy/${a.app}/lock`, 'true'])
    return { ...run, settledMs: Date.now() - end }
  }

  say('==> the action itself: bundle size, start-up before the first network call (10 runs)')
  const bundleBytes = statSync(path.join(ROOT, 'dist/index.js')).size
  const startup = await startupMs(ws, inputs)
  measured('start-up', { median: median(startup) })
  const floor = await floorMs(inputs)
  say(
    `    a rollback's floor here: node start ${floor.nodeStart} ms, SSH handshake ${floor.handshake} ms, one SSH command ${floor.exec} ms, nginx reload ${floor.reload} ms`
  )
  say(
    `    dist/index.js ${(bundleBytes / 2 ** 20).toFixed(2)} MiB; start-up median ${median(startup)} ms (${startup.join(', ')})`
  )

  say('==> v1.0.0 on every site (not measured)')
  for (const a of [BG, DNAT, WARM, TASK]) {
    writeSite(svc, a.app, a.port)
    must(await deploy(a), `bg-deploy ${a.app} v1.0.0`)
  }
  const image = (/** @type {string} */ v) => `${inputs.image}:${v}`
  must(await runClassic(svc, image('v1.0.0')), 'classic v1.0.0')
  // every site answers from the deploy under test, not from something else on its port
  for (const a of [BG, DNAT, WARM, TASK, CLASSIC]) {
    const r = await httpGet(`http://127.0.0.1:${a.port}/`, 2000).catch((e) => ({
      status: 0,
      body: String(e.message)
    }))
    if (r.status !== 200 || r.body !== 'v1.0.0\n')
      throw new Error(
        `the site of ${a.app} on 127.0.0.1:${a.port} answers ${r.status} ${JSON.stringify(r.body.slice(0, 80))}, not v1.0.0 from its deploy: is another server listening there?`
      )
  }
  if (BUSY) {
    say('==> busy: a second load generator (32 keep-alive + 8 new-connection clients) from now on')
    busy = spawn(
      process.execPath,
      [
        path.join(ROOT, 'scripts/load.mjs'),
        '--url',
        `http://127.0.0.1:${CLASSIC.port}/`,
        '--keepalive',
        '32',
        '--fresh',
        '8',
        '--slow',
        '0',
        '--seconds',
        '3600'
      ],
      { stdio: 'ignore' }
    )
  }

  say("==> the app's own readiness: docker run until its first 2xx (5 runs, under the same load)")
  const readiness = (
    await underLoad(`http://127.0.0.1:${BG.port}/`, () => readinessMs(image('v1.0.0')))
  ).result
  const ready = median(readiness)
  say(
    `    median ${ready} ms (${readiness.join(', ')}); the app sleeps ${START_UP} s before it listens`
  )
  return {
    svc,
    github,
    facts,
    inputs,
    ws,
    deploy,
    image,
    startup,
    floor,
    bundleBytes,
    readiness,
    ready,
    stopBusy: () => busy?.kill('SIGTERM')
  }
}

/**
 * bg-deploy on app `a`: deploy `next` under load, then roll back to `prev` under load.
 * @param {Bench} b
 * @param {{ app: string, port: number }} a
 * @param {string} label
 * @param {string} prev
 * @param {string} next
 * @param {Record<string, string>} [extra] more inputs for both runs
 */
async function bgRound(b, a, label, prev, next, extra = {}) {
  const url = `http://127.0.0.1:${a.port}/`
  const d = await underLoad(url, () => b.deploy(a, extra))
  must(d.result, `bg-deploy ${label} ${next}`)
  const tl = timelineOf(d.result.outputs)
  // server side: from the moment the script may pull the pushed image
  const dep = figures(
    d.stats,
    d.result,
    next,
    prev,
    tl.pull ?? NaN,
    tl.finished ?? NaN,
    tl.switched
  )
  const phases = phasesOf(tl, d.result.startedAt, dep.toServingMs + d.result.startedAt)
  Object.assign(dep, phases)
  measured(`bg-deploy ${label} ${next}`, {
    toServingMs: dep.toServingMs,
    serverToServingMs: dep.serverToServingMs,
    ...(a === BG ? phases : {})
  })
  say(
    `    ${label.padEnd(16)} serving after ${s2(dep.toServingMs)} s (server ${s2(dep.serverToServingMs)} s), total ${s2(dep.totalMs)} s, failed ${dep.failed}, races ${dep.races}`
  )
  const r = await underLoad(url, () =>
    b.deploy(
      a,
      { ...extra, rollback: 'previous' },
      { eventName: 'workflow_dispatch', event: { inputs: { rollback: 'previous' } } }
    )
  )
  must(r.result, `bg-deploy ${label} rollback`)
  const rtl = timelineOf(r.result.outputs)
  const rb = figures(
    r.stats,
    r.result,
    prev,
    next,
    r.result.startedAt,
    rtl.finished ?? NaN,
    rtl.switched
  )
  // from the server script's start (the SSH session's first step) to the previous version serving
  const fromScriptMs = firstServed(r.stats, prev, rtl.begin ?? NaN) - (rtl.begin ?? NaN)
  say(
    `    ${(label + ' rollback').padEnd(16)} ${prev} serving after ${s2(rb.toServingMs)} s (${s2(fromScriptMs)} s after the script began), total ${s2(rb.totalMs)} s, failed ${rb.failed}, races ${rb.races}`
  )
  const served = rb.toServingMs + r.result.startedAt
  Object.assign(rb, {
    fromScriptMs,
    beforeSentMs: (rtl.sent ?? NaN) - r.result.startedAt,
    execMs: (rtl.begin ?? NaN) - (rtl.sent ?? NaN),
    toStartedMs: (rtl.started ?? NaN) - (rtl.begin ?? NaN),
    healthMs: (rtl.healthy ?? NaN) - (rtl.started ?? NaN),
    switchMs: (rtl.switched ?? NaN) - (rtl.healthy ?? NaN),
    seenMs: served - (rtl.switched ?? NaN)
  })
  measured(`bg-deploy ${label} rollback`, { toServingMs: rb.toServingMs, fromScriptMs })
  return { dep, rb, tl, load: d.stats, startedAt: d.result.startedAt, ms: d.result.ms }
}

/**
 * The blog's classic script deploying `next` under load.
 * @param {Bench} b
 * @param {string} prev
 * @param {string} next
 */
async function classicRound(b, prev, next) {
  const cl = await underLoad(`http://127.0.0.1:${CLASSIC.port}/`, () =>
    runClassic(b.svc, b.image(next))
  )
  const c =
    /** @type {{ code: number, log: string, startedAt: number, ms: number, serverStart: number, serverEnd: number }} */ (
      cl.result
    )
  must(c, `classic ${next}`)
  const fig = figures(cl.stats, c, next, prev, c.serverStart, c.serverEnd)
  measured(`classic ${next}`, {
    toServingMs: fig.toServingMs,
    serverToServingMs: fig.serverToServingMs
  })
  say(
    `    ${'classic'.padEnd(16)} serving after ${s2(fig.toServingMs)} s (server ${s2(fig.serverToServingMs)} s), total ${s2(fig.totalMs)} s, failed ${fig.failed}, races ${fig.races}`
  )
  return { fig, stats: cl.stats, run: c }
}

/**
 * The rounds on one server: each deploys the next version with bg-deploy (reload, dnat, warm) and
 * the classic script, under the same load; the middle round's load is kept for the chart.
 * @param {Bench} b
 */
async function rounds(b) {
  const all = []
  /** @type {Parameters<typeof chart>[0]} */
  let panels = []
  const prev = 'v1.0.0' // bg-deploy rolls back to it every round
  let classicPrev = 'v1.0.0'
  for (let i = 1; i <= RUNS; i++) {
    const next = `v1.${i}.0`
    commitAppVersion(b.ws, { version: next, startDelay: START_UP })
    say(`==> round ${i}/${RUNS}: ${prev} → ${next}`)
    const bg = await bgRound(b, BG, 'bg-deploy', prev, next)
    const cl = await classicRound(b, classicPrev, next)
    const dn = await bgRound(b, DNAT, 'bg-deploy dnat', prev, next)
    // keep-warm: the rollback finds the previous version's container running
    const warm = await bgRound(b, WARM, 'bg-deploy warm', prev, next, { 'keep-warm': '600' })
    const task = await bgRound(b, TASK, 'bg-deploy task', prev, next)
    all.push({
      round: i,
      from: prev,
      to: next,
      bgDeploy: bg.dep,
      bgRollback: bg.rb,
      dnatDeploy: dn.dep,
      dnatRollback: dn.rb,
      warmDeploy: warm.dep,
      warmRollback: warm.rb,
      taskDeploy: { ...task.dep, taskMs: (task.tl.tasked ?? NaN) - (task.tl.task ?? NaN) },
      taskRollback: task.rb,
      classic: cl.fig,
      bgTimeline: bg.tl,
      dnatTimeline: dn.tl
    })
    if (i === Math.ceil(RUNS / 2)) panels = chartPanels(bg, dn, cl, prev, classicPrev, next)
    classicPrev = next
  }
  return { rounds: all, panels }
}

/**
 * The chart's panels: each deploy's load over time, with its steps marked.
 * @param {Awaited<ReturnType<typeof bgRound>>} bg
 * @param {Awaited<ReturnType<typeof bgRound>>} dn
 * @param {Awaited<ReturnType<typeof classicRound>>} cl
 * @param {string} prev
 * @param {string} classicPrev
 * @param {string} next
 * @returns {Parameters<typeof chart>[0]}
 */
function chartPanels(bg, dn, cl, prev, classicPrev, next) {
  /** @param {typeof bg} x @param {string} title */
  const panel = (x, title) => ({
    title,
    stats: x.load,
    startedAt: x.startedAt,
    prev,
    next,
    marks: /** @type {[string, number][]} */ ([
      ['server side begins', (x.tl.begin ?? NaN) - x.startedAt],
      ['healthy', (x.tl.healthy ?? NaN) - x.startedAt],
      ['switched', (x.tl.switched ?? NaN) - x.startedAt],
      ['drained', (x.tl.drained ?? NaN) - x.startedAt],
      ['run ends', x.ms]
    ])
  })
  return [
    panel(bg, `bg-deploy (switch-mode reload) ${prev} → ${next}`),
    panel(dn, `bg-deploy (switch-mode dnat) ${prev} → ${next}`),
    {
      title: `classic script ${classicPrev} → ${next}`,
      stats: cl.stats,
      startedAt: cl.run.startedAt,
      prev: classicPrev,
      next,
      marks: [
        ['script begins', cl.run.serverStart - cl.run.startedAt],
        ['script ends', cl.run.serverEnd - cl.run.startedAt]
      ]
    }
  ]
}

/**
 * The results file, the chart, the tables on stdout and (unless --no-readme) in the docs pages.
 * @param {Bench} b
 * @param {Awaited<ReturnType<typeof rounds>>} single
 * @param {{ hosts?: any, swarm?: any }} shapes
 * @param {number} t00
 */
async function write(b, single, shapes, t00) {
  const { hosts, swarm, canary } = shapes
  const r = report({
    rounds: single.rounds,
    runs: RUNS,
    ready: b.ready,
    readiness: b.readiness,
    startup: b.startup,
    floor: b.floor,
    bundleBytes: b.bundleBytes,
    facts: b.facts,
    load: LOAD,
    startUp: START_UP,
    busy: BUSY,
    githubLatencyMs: GITHUB_LATENCY
  })
  const resultsFile = path.join(OUT, BUSY ? 'results-busy.json' : 'results.json')
  await writeFormatted(
    resultsFile,
    JSON.stringify(
      { ...r.results, hosts: hosts?.results, swarm, canary: canary?.results },
      null,
      2
    ) + '\n'
  )
  if (single.panels.length && !BUSY)
    writeFileSync(path.join(OUT, 'chart.svg'), chart(single.panels))
  const swarmRow = swarm
    ? swarmTable(RUNS, r.results.medians.bgDeploy, r.results.failed.bgDeploy, swarm)
    : undefined
  say(
    `\n${r.context}\n\n${r.table}\n\n${r.pathTable}\n\n${r.targetTable}\n\n${hosts?.table ?? ''}\n\n${swarmRow ?? ''}\n\n${canary?.table ?? ''}\n`
  )
  say(
    `results: ${path.relative(process.cwd(), resultsFile)}${BUSY ? '' : `, chart: ${path.relative(process.cwd(), path.join(OUT, 'chart.svg'))}`}; ${s2(Date.now() - t00)} s in all`
  )
  say(`${r.modes}\n`)
  if (README) {
    await updateDocs(
      ROOT,
      { ...r, hosts: hosts?.table, swarm: swarmRow, busy: BUSY },
      path.relative(ROOT, path.join(OUT, 'chart.svg'))
    )
    say(
      `docs: ${BUSY ? 'the busy-machine bench section' : 'the benchmark, switch-mode, several-server and Swarm tables'} updated`
    )
    if (canary && !BUSY) {
      await updateMarkers(path.join(ROOT, 'docs/watch.md'), 'canary', canary.table)
      say('docs/watch.md: the canary table updated')
    }
  }
}

/** Set up, the rounds on one server, several servers and Swarm, then write what was measured. */
async function main() {
  const t00 = Date.now()
  const b = await setup()
  const single = await rounds(b)
  /** @type {{ hosts?: any, swarm?: any, canary?: any }} */
  const shapes = {}
  say('==> the same bad version with canary: 10 and without (the watch alone), same app and load')
  shapes.canary = await benchCanary(b.svc, RUNS, say)
  if (!ONLY_SINGLE) {
    say(
      `==> one server, and ${SERVERS.slice(1).join(' and ')} servers behind a load balancer (scripts/hosts.sh), same app and load`
    )
    shapes.hosts = await benchHosts(b.svc, RUNS, say, SERVERS)
    say(
      '==> engine swarm: a Docker Swarm service, 2 replicas (scripts/swarm.sh), same app and load'
    )
    shapes.swarm = await benchSwarm(b.svc, RUNS, say)
  }
  b.stopBusy()
  await b.github.stop()
  await write(b, single, shapes, t00)
  for (const a of [BG, DNAT, CLASSIC, WARM, TASK])
    removeApp(b.svc, a.app, [`/tmp/${a.app}.current_color`])
}

await main()
