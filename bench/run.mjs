#!/usr/bin/env node
// `npm run bench`: bg-deploy against the classic blog script (bench/classic-deploy.sh, the
// baseline), side by side on the same loopback server, same app image, same load.
//
//   npm run bench [-- --runs 5] [--out bench] [--no-readme]
//
// Each round: bg-deploy deploys a new version (the real bundle, run as GitHub runs it), the classic
// script deploys that same image to its own site, then bg-deploy rolls back. A load generator
// (16 keep-alive + 4 new-connection clients + 2 with a 3 s request in flight) runs through each.
// Writes <out>/results.json and <out>/chart.svg, prints a table with medians, and (unless
// --no-readme) puts the table into README.md between the bench markers.
import { execFileSync, spawn, spawnSync } from 'node:child_process'
import { createServer } from 'node:net'
import { cpus, totalmem } from 'node:os'
import { mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import {
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
  removeNatChain,
  runAction,
  services,
  servicesScript,
  sleep,
  timelineOf,
  writeSite,
  forgetRepository
} from '../scripts/harness.mjs'

const argv = process.argv.slice(2)
const opt = (/** @type {string} */ name, /** @type {string} */ dflt) => {
  const i = argv.indexOf(`--${name}`)
  return i >= 0 && argv[i + 1] ? argv[i + 1] : dflt
}
const RUNS = Number(opt('runs', '5'))
const OUT = path.resolve(opt('out', path.join(ROOT, 'bench')))
const README = !argv.includes('--no-readme')
const START_UP = 1 // seconds the sample app sleeps before it listens
const BG = { app: 'bgbench', port: 18090 }
const DNAT = { app: 'bgdnat', port: 18100 }
const CLASSIC = { app: 'classic', port: 18095 }
const LOAD = { keepalive: 16, fresh: 4, slow: 2 }

const say = (/** @type {string} */ s) => process.stdout.write(`${s}\n`)
const median = (/** @type {number[]} */ xs) => {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b)
  if (v.length === 0) return NaN
  const m = Math.floor(v.length / 2)
  return v.length % 2 ? v[m] : ((v[m - 1] ?? 0) + (v[m] ?? 0)) / 2
}
const s2 = (/** @type {number} */ ms) => (Number.isFinite(ms) ? (ms / 1000).toFixed(2) : 'n/a')

/** @param {import('../scripts/harness.mjs').Services} svc */
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
function removeApp(app) {
  spawnSync('docker', ['rm', '-f', `${app}-blue`, `${app}-green`], { stdio: 'ignore' })
  removeNatChain(app)
}

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
    const run = await runAction({ ...inputs, port: String(port) }, { workspace: ws })
    runs.push(accepted.length ? (accepted[0] ?? NaN) - run.startedAt : NaN)
  }
  server.close()
  return runs
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
 * @param {import('../scripts/harness.mjs').Services} svc
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
 * @param {import('../scripts/harness.mjs').LoadStats} stats
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
 * "Version served over time": stacked bars of responses per 100 ms, old version, new version and
 * failures, for one deploy of each tool on the same time scale.
 * @param {{ title: string, stats: import('../scripts/harness.mjs').LoadStats, startedAt: number, prev: string, next: string, marks: [string, number][] }[]} panels
 */
function chart(panels) {
  const binMs = 100
  const W = 900
  const H = 170
  const left = 60
  const right = 20
  const top = 56
  const spanMs = Math.max(...panels.map((p) => p.stats.t0 + p.stats.ms - p.startedAt)) + 200
  const x = (/** @type {number} */ ms) =>
    left + ((ms + 1000) / (spanMs + 1000)) * (W - left - right)
  const esc = (/** @type {string} */ s) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;')
  const parts = []
  panels.forEach((p, k) => {
    /** @type {Map<number, Record<string, number>>} */
    const bins = new Map()
    for (const [t, counts] of p.stats.timeline) {
      const rel = p.stats.t0 + t - p.startedAt
      const b = Math.floor(rel / binMs)
      const acc = bins.get(b) ?? {}
      for (const [v, n] of Object.entries(counts)) acc[v] = (acc[v] ?? 0) + n
      bins.set(b, acc)
    }
    const max = Math.max(
      1,
      ...[...bins.values()].map((c) => Object.values(c).reduce((a, n) => a + n, 0))
    )
    const y0 = top + k * (H + 50) + H
    parts.push(
      `<text x="${left}" y="${y0 - H - 8}" font-size="14" font-weight="bold">${esc(p.title)}</text>`
    )
    parts.push(`<line x1="${left}" y1="${y0}" x2="${W - right}" y2="${y0}" stroke="#999"/>`)
    for (const [b, c] of bins) {
      const bx = x(b * binMs)
      const bw = Math.max(1, x((b + 1) * binMs) - bx - 0.5)
      let y = y0
      for (const [key, color] of [
        [p.prev, '#9aa5b1'],
        [p.next, '#2f9e44'],
        ['failed', '#e03131']
      ]) {
        const n = c[key] ?? 0
        if (!n) continue
        const h = key === 'failed' ? Math.max(4, (n / max) * H) : (n / max) * H
        y -= h
        parts.push(
          `<rect x="${bx.toFixed(1)}" y="${y.toFixed(1)}" width="${bw.toFixed(1)}" height="${h.toFixed(1)}" fill="${color}"/>`
        )
      }
    }
    p.marks.forEach(([label, ms], m) => {
      const mx = x(ms)
      parts.push(
        `<line x1="${mx.toFixed(1)}" y1="${y0 - H}" x2="${mx.toFixed(1)}" y2="${y0}" stroke="#333" stroke-dasharray="3,3"/>`
      )
      parts.push(
        `<text x="${(mx + 3).toFixed(1)}" y="${y0 - H + 12 + m * 13}" font-size="11">${esc(label)}</text>`
      )
    })
    for (let s = 0; s * 1000 <= spanMs; s += spanMs > 15000 ? 5 : 1)
      parts.push(
        `<text x="${x(s * 1000).toFixed(1)}" y="${y0 + 14}" font-size="10" text-anchor="middle">${s}s</text>`
      )
  })
  const height = top + panels.length * (H + 50) + 10
  const legend = [
    ['old version', '#9aa5b1'],
    ['new version', '#2f9e44'],
    ['failed request', '#e03131']
  ]
    .map(
      ([l, c], i) =>
        `<rect x="${left + 340 + i * 130}" y="8" width="12" height="12" fill="${c}"/><text x="${left + 356 + i * 130}" y="18" font-size="12">${l}</text>`
    )
    .join('')
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${height}" font-family="sans-serif" viewBox="0 0 ${W} ${height}">
<rect width="100%" height="100%" fill="white"/>
<text x="${left}" y="18" font-size="12">responses per 100 ms, from the start of the run</text>${legend}
${parts.join('\n')}
</svg>
`
}

/**
 * Write a file the way the repository's formatter (prettier, a dev dependency) leaves it, so that
 * committed results pass `npm run lint`.
 * @param {string} file
 * @param {string} text
 */
async function writeFormatted(file, text) {
  try {
    const prettier = await import('prettier')
    const options = (await prettier.resolveConfig(file)) ?? {}
    writeFileSync(file, await prettier.format(text, { ...options, filepath: file }))
  } catch {
    writeFileSync(file, text) // without dev dependencies: unformatted, still correct
  }
}

async function main() {
  const t00 = Date.now()
  say('==> services (scripts/services.sh up)')
  servicesScript('up', say)
  const svc = services()
  mkdirSync(OUT, { recursive: true })
  const facts = machine(svc)
  say(
    `==> ${facts.date} · ${facts.cpu} · ${facts.memoryGiB} GiB · ${facts.kernel} · node ${facts.node} · docker ${facts.docker} · nginx ${facts.nginx}`
  )

  // a clean start: every app and its site anew, and the registry without bench/app's versions
  await forgetRepository(svc.registry, 'bench/app')
  for (const a of [BG, DNAT, CLASSIC]) {
    removeApp(a.app)
    for (const f of [`${a.app}-site.conf`, `${a.app}-upstream.conf`])
      rmSync(path.join(svc.nginxConfd, f), { force: true })
    rmSync(`/var/lib/bg-deploy/${a.app}`, { recursive: true, force: true })
    rmSync(`/tmp/${a.app}.current_color`, { force: true })
  }
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
    'create-release': 'false',
    'switch-mode': a === DNAT ? 'dnat' : 'reload',
    'live-port': String(a.port + 3)
  })
  const inputs = inputsOf(BG)
  const wsDir = path.join(svc.dir, 'bench-app')
  rmSync(wsDir, { recursive: true, force: true })
  const ws = makeWorkspace({ version: 'v1.0.0', startDelay: START_UP }, 'release v1.0.0', wsDir)
  // a bg-deploy run, then the wait until the old color has stopped in the background (lock free)
  const deploy = async (
    /** @type {{ app: string, port: number }} */ a,
    /** @type {Record<string, string>} */ extra = {},
    /** @type {object} */ ctx = {}
  ) => {
    const sha = headSha(ws)
    const run = await runAction(
      { ...inputsOf(a), ...extra },
      { workspace: ws, sha, event: { head_commit: { id: sha, message: headMessage(ws) } }, ...ctx }
    )
    const end = Date.now()
    spawnSync('flock', ['-w', '60', `/var/lib/bg-deploy/${a.app}/lock`, 'true'])
    return { ...run, settledMs: Date.now() - end }
  }
  const must = (
    /** @type {{ code: number | null, log: string }} */ r,
    /** @type {string} */ what
  ) => {
    if (r.code !== 0) throw new Error(`${what} failed (exit ${r.code}):\n${r.log}`)
  }

  say('==> the action itself: bundle size, start-up before the first network call (10 runs)')
  const bundleBytes = statSync(path.join(ROOT, 'dist/index.js')).size
  const startup = await startupMs(ws, inputs)
  say(
    `    dist/index.js ${(bundleBytes / 2 ** 20).toFixed(2)} MiB; start-up median ${median(startup)} ms (${startup.join(', ')})`
  )

  say('==> v1.0.0 on every site (not measured)')
  for (const a of [BG, DNAT]) {
    writeSite(svc, a.app, a.port)
    must(await deploy(a), `bg-deploy ${a.app} v1.0.0`)
  }
  const image = (/** @type {string} */ v) => `${inputs.image}:${v}`
  must(await runClassic(svc, image('v1.0.0')), 'classic v1.0.0')

  say("==> the app's own readiness: docker run until its first 2xx (5 runs, under the same load)")
  const readiness = (
    await underLoad(`http://127.0.0.1:${BG.port}/`, () => readinessMs(image('v1.0.0')))
  ).result
  const ready = median(readiness)
  say(
    `    median ${ready} ms (${readiness.join(', ')}); the app sleeps ${START_UP} s before it listens`
  )

  /**
   * bg-deploy on app `a`: deploy `next` under load, then roll back to `prev` under load.
   * @param {{ app: string, port: number }} a
   * @param {string} label
   * @param {string} prev
   * @param {string} next
   */
  const bgRound = async (a, label, prev, next) => {
    const url = `http://127.0.0.1:${a.port}/`
    const d = await underLoad(url, () => deploy(a))
    must(d.result, `bg-deploy ${label} ${next}`)
    const tl = timelineOf(d.result.outputs)
    const dep = figures(
      d.stats,
      d.result,
      next,
      prev,
      tl.begin ?? NaN,
      tl.finished ?? NaN,
      tl.switched
    )
    say(
      `    ${label.padEnd(16)} serving after ${s2(dep.toServingMs)} s (server ${s2(dep.serverToServingMs)} s), total ${s2(dep.totalMs)} s, failed ${dep.failed}, races ${dep.races}`
    )
    const r = await underLoad(url, () =>
      deploy(
        a,
        { rollback: 'previous' },
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
    say(
      `    ${(label + ' rollback').padEnd(16)} ${prev} serving after ${s2(rb.toServingMs)} s, total ${s2(rb.totalMs)} s, failed ${rb.failed}, races ${rb.races}`
    )
    return { dep, rb, tl, load: d.stats, startedAt: d.result.startedAt, ms: d.result.ms }
  }

  const rounds = []
  /** @type {Parameters<typeof chart>[0]} */
  let panels = []
  const prev = 'v1.0.0' // bg-deploy rolls back to it every round
  let classicPrev = 'v1.0.0'
  for (let i = 1; i <= RUNS; i++) {
    const next = `v1.${i}.0`
    commitAppVersion(ws, { version: next, startDelay: START_UP })
    say(`==> round ${i}/${RUNS}: ${prev} → ${next}`)

    const bg = await bgRound(BG, 'bg-deploy', prev, next)

    const cl = await underLoad(`http://127.0.0.1:${CLASSIC.port}/`, () =>
      runClassic(svc, image(next))
    )
    const c =
      /** @type {{ code: number, log: string, startedAt: number, ms: number, serverStart: number, serverEnd: number }} */ (
        cl.result
      )
    must(c, `classic ${next}`)
    const clFig = figures(cl.stats, c, next, classicPrev, c.serverStart, c.serverEnd)
    say(
      `    ${'classic'.padEnd(16)} serving after ${s2(clFig.toServingMs)} s (server ${s2(clFig.serverToServingMs)} s), total ${s2(clFig.totalMs)} s, failed ${clFig.failed}, races ${clFig.races}`
    )

    const dn = await bgRound(DNAT, 'bg-deploy dnat', prev, next)

    rounds.push({
      round: i,
      from: prev,
      to: next,
      bgDeploy: bg.dep,
      bgRollback: bg.rb,
      dnatDeploy: dn.dep,
      dnatRollback: dn.rb,
      classic: clFig,
      bgTimeline: bg.tl,
      dnatTimeline: dn.tl
    })
    if (i === Math.ceil(RUNS / 2)) {
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
      panels = [
        panel(bg, `bg-deploy (switch-mode reload) ${prev} → ${next}`),
        panel(dn, `bg-deploy (switch-mode dnat) ${prev} → ${next}`),
        {
          title: `classic script ${classicPrev} → ${next}`,
          stats: cl.stats,
          startedAt: c.startedAt,
          prev: classicPrev,
          next,
          marks: [
            ['script begins', c.serverStart - c.startedAt],
            ['script ends', c.serverEnd - c.startedAt]
          ]
        }
      ]
    }
    classicPrev = next
  }

  /** @typedef {'bgDeploy' | 'bgRollback' | 'dnatDeploy' | 'dnatRollback' | 'classic'} Kind */
  const pick = (/** @type {Kind} */ k, /** @type {string} */ f) =>
    median(rounds.map((r) => /** @type {Record<string, number>} */ (r[k])[f] ?? NaN))
  const sum = (/** @type {Kind} */ k, /** @type {string} */ f) =>
    rounds.reduce((a, r) => a + /** @type {Record<string, number>} */ (r[k][f] ?? 0), 0)
  const DEPLOY_FIELDS = [
    'toServingMs',
    'serverToServingMs',
    'totalMs',
    'serverTotalMs',
    'drainMs',
    'stoppedAfterMs'
  ]
  const ROLLBACK_FIELDS = ['toServingMs', 'totalMs', 'stoppedAfterMs']
  /** @param {Kind} k @param {string[]} fields */
  const medians = (k, fields) => Object.fromEntries(fields.map((f) => [f, pick(k, f)]))
  const med = {
    bgDeploy: medians('bgDeploy', DEPLOY_FIELDS),
    dnatDeploy: medians('dnatDeploy', DEPLOY_FIELDS),
    classic: medians('classic', ['toServingMs', 'serverToServingMs', 'totalMs', 'serverTotalMs']),
    bgRollback: medians('bgRollback', ROLLBACK_FIELDS),
    dnatRollback: medians('dnatRollback', ROLLBACK_FIELDS)
  }
  const failed = {
    bgDeploy: sum('bgDeploy', 'failed'),
    bgRollback: sum('bgRollback', 'failed'),
    dnatDeploy: sum('dnatDeploy', 'failed'),
    dnatRollback: sum('dnatRollback', 'failed'),
    classic: sum('classic', 'failed'),
    bgRaces: sum('bgDeploy', 'races') + sum('bgRollback', 'races'),
    dnatRaces: sum('dnatDeploy', 'races') + sum('dnatRollback', 'races'),
    classicRaces: sum('classic', 'races')
  }
  const bgFailed = failed.bgDeploy + failed.bgRollback + failed.dnatDeploy + failed.dnatRollback
  const overhead = {
    serving: (med.bgDeploy.serverToServingMs ?? NaN) - ready,
    total: (med.bgDeploy.serverTotalMs ?? NaN) - ready - (med.bgDeploy.drainMs ?? NaN),
    rollback: (med.bgRollback.toServingMs ?? NaN) - ready
  }
  const targets = [
    [
      'failed requests, bg-deploy deploys and rollbacks, both modes',
      `${bgFailed}`,
      '0',
      bgFailed === 0
    ],
    [
      'new version serving − app readiness (server side)',
      `${s2(overhead.serving)} s`,
      '≤ 0.5 s',
      overhead.serving <= 500
    ],
    [
      'total − readiness − actual drain (server side)',
      `${s2(overhead.total)} s`,
      '≤ 1 s',
      overhead.total <= 1000
    ],
    [
      'rollback: previous serving − readiness (from run start)',
      `${s2(overhead.rollback)} s`,
      '≤ 1.5 s',
      overhead.rollback <= 1500
    ],
    [
      'action start-up before the first network call',
      `${median(startup)} ms`,
      '≤ 300 ms',
      median(startup) <= 300
    ]
  ]
  const ratio = (/** @type {number | undefined} */ a, /** @type {number | undefined} */ b) =>
    a !== undefined && b ? (a / b).toFixed(2) : 'n/a'
  /** @param {string} label @param {string} f */
  const row = (label, f) =>
    `| ${label} | ${s2(med.bgDeploy[f] ?? NaN)} s | ${s2(med.dnatDeploy[f] ?? NaN)} s | ${s2(med.classic[f] ?? NaN)} s | ${ratio(med.bgDeploy[f], med.classic[f])} |`
  const table = [
    `| median of ${RUNS} | bg-deploy (reload) | bg-deploy (dnat) | classic script | bg-deploy (reload) / classic |`,
    '| --- | --- | --- | --- | --- |',
    row("new version serving, from the run's start", 'toServingMs'),
    row('new version serving, from the server-side start', 'serverToServingMs'),
    row('total run', 'totalMs'),
    row('total, server side', 'serverTotalMs'),
    `| drain: switch → last response of the old version | ${s2(med.bgDeploy.drainMs ?? NaN)} s | ${s2(med.dnatDeploy.drainMs ?? NaN)} s | | |`,
    `| old container stopped (in the background), after the run | ${s2(med.bgDeploy.stoppedAfterMs ?? NaN)} s | ${s2(med.dnatDeploy.stoppedAfterMs ?? NaN)} s | (inside its run) | |`,
    `| failed requests, all ${RUNS} deploys | ${failed.bgDeploy} | ${failed.dnatDeploy} | ${failed.classic} | |`,
    `| keep-alive races retried, all ${RUNS} deploys | ${sum('bgDeploy', 'races')} | ${sum('dnatDeploy', 'races')} | ${failed.classicRaces} | |`,
    `| rollback: previous version serving, from the run's start | ${s2(med.bgRollback.toServingMs ?? NaN)} s | ${s2(med.dnatRollback.toServingMs ?? NaN)} s | (none) | |`,
    `| rollback: total run | ${s2(med.bgRollback.totalMs ?? NaN)} s | ${s2(med.dnatRollback.totalMs ?? NaN)} s | (none) | |`,
    `| failed requests / keep-alive races, all ${RUNS} rollbacks | ${failed.bgRollback} / ${sum('bgRollback', 'races')} | ${failed.dnatRollback} / ${sum('dnatRollback', 'races')} | | |`
  ].join('\n')
  const targetTable = [
    '| target | measured | goal | met |',
    '| --- | --- | --- | --- |',
    ...targets.map(([a, b, c, d]) => `| ${a} | ${b} | ${c} | ${d ? 'yes' : '**no**'} |`)
  ].join('\n')
  const context = [
    `Measured ${facts.date.slice(0, 10)} on ${facts.cpu}, ${facts.memoryGiB} GiB, ${facts.kernel}, node ${facts.node}, docker ${facts.docker}, nginx ${facts.nginx}; everything on loopback.`,
    `App readiness (docker run → first 2xx, median of 5): ${s2(ready)} s (the sample app sleeps ${START_UP} s). Bundle: dist/index.js ${(bundleBytes / 2 ** 20).toFixed(2)} MiB; start-up before the first network call: median ${median(startup)} ms of 10.`,
    `Load in every run: ${LOAD.keepalive} keep-alive clients, ${LOAD.fresh} opening a new connection per request, ${LOAD.slow} keeping a 3 s request in flight.`
  ].join('\n')
  const results = {
    machine: facts,
    runs: RUNS,
    load: LOAD,
    appStartUpSeconds: START_UP,
    readinessMs: readiness,
    startupMs: startup,
    bundleBytes,
    medians: med,
    failed,
    overheadMs: overhead,
    targets: targets.map(([t, m, g, ok]) => ({ target: t, measured: m, goal: g, met: ok })),
    rounds
  }
  await writeFormatted(path.join(OUT, 'results.json'), JSON.stringify(results, null, 2) + '\n')
  if (panels.length) writeFileSync(path.join(OUT, 'chart.svg'), chart(panels))
  say(`\n${context}\n\n${table}\n\n${targetTable}\n`)
  say(
    `results: ${path.relative(process.cwd(), path.join(OUT, 'results.json'))}, chart: ${path.relative(process.cwd(), path.join(OUT, 'chart.svg'))}; ${s2(Date.now() - t00)} s in all`
  )
  const switches = 2 * RUNS
  const perSwitch = (/** @type {number} */ n) => (n / switches).toFixed(2)
  const modes = [
    `Measured by \`npm run bench\` (${facts.date.slice(0, 10)}, same run, same load: ${LOAD.keepalive} keep-alive clients that retry a reset reused connection once as browsers do, ${LOAD.fresh} new-connection clients, ${LOAD.slow} slow requests in flight), ${RUNS} deploys and ${RUNS} rollbacks in each mode:`,
    '',
    '| per switch (deploy or rollback) | reload | dnat |',
    '| --- | --- | --- |',
    `| failed requests (non-2xx or connection error) | ${perSwitch(failed.bgDeploy + failed.bgRollback)} | ${perSwitch(failed.dnatDeploy + failed.dnatRollback)} |`,
    `| keep-alive races (reset on a reused connection, retried) | ${perSwitch(failed.bgRaces)} | ${perSwitch(failed.dnatRaces)} |`,
    `| new version serving, from the server-side start (median) | ${s2(med.bgDeploy.serverToServingMs ?? NaN)} s | ${s2(med.dnatDeploy.serverToServingMs ?? NaN)} s |`
  ].join('\n')
  say(`${modes}\n`)
  if (README) {
    const file = path.join(ROOT, 'README.md')
    let text = readFileSync(file, 'utf8')
    const rel = path.relative(ROOT, path.join(OUT, 'chart.svg'))
    text = text.replace(
      /(<!-- bench:start -->\n)[\s\S]*?(<!-- bench:end -->)/,
      `$1${context}\n\n${table}\n\n${targetTable}\n\n![version served over time](${rel})\n$2`
    )
    text = text.replace(/(<!-- modes:start -->\n)[\s\S]*?(<!-- modes:end -->)/, `$1${modes}\n$2`)
    await writeFormatted(file, text)
    say('README.md: bench and switch-mode sections updated')
  }
  for (const a of [BG, DNAT, CLASSIC]) removeApp(a.app)
}

await main()
