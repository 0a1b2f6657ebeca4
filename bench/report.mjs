// The benchmark's report: medians of the rounds, the targets, the tables the docs pages show, and the
// results file. bench/run.mjs measures; this turns the measurements into figures.
import { readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'

export const median = (/** @type {number[]} */ xs) => {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b)
  if (v.length === 0) return NaN
  const m = Math.floor(v.length / 2)
  return v.length % 2 ? v[m] : ((v[m - 1] ?? 0) + (v[m] ?? 0)) / 2
}
export const s2 = (/** @type {number} */ ms) =>
  Number.isFinite(ms) ? (ms / 1000).toFixed(2) : 'n/a'

/**
 * @typedef {{ rounds: any[], runs: number, ready: number, readiness: number[], startup: number[], floor: { nodeStart: number, handshake: number, exec: number, reload: number, sum: number }, bundleBytes: number, facts: any, load: { keepalive: number, fresh: number, slow: number }, startUp: number, busy?: boolean, githubLatencyMs?: number }} Measured
 * @typedef {'bgDeploy' | 'bgRollback' | 'dnatDeploy' | 'dnatRollback' | 'classic' | 'warmDeploy' | 'warmRollback' | 'taskDeploy' | 'taskRollback'} Kind
 * @typedef {ReturnType<typeof figuresOf>} Figures
 */

const PHASES = [
  'beforeBuildMs',
  'buildPushMs',
  'draftMs',
  'scriptBeganMs',
  'execMs',
  'pullMs',
  'runMs',
  'healthMs',
  'switchMs',
  'seenMs',
  'overBuildMs'
]
const DEPLOY_FIELDS = [
  'toServingMs',
  'serverToServingMs',
  'totalMs',
  'serverTotalMs',
  'drainMs',
  'stoppedAfterMs',
  ...PHASES
]
const ROLLBACK_FIELDS = [
  'toServingMs',
  'fromScriptMs',
  'totalMs',
  'stoppedAfterMs',
  'beforeSentMs',
  'execMs',
  'toStartedMs',
  'healthMs',
  'switchMs',
  'seenMs'
]

/**
 * The rounds' medians, failures and the overhead over the app's own readiness.
 * @param {Measured} m
 */
function figuresOf(m) {
  const { rounds, ready } = m
  const pick = (/** @type {Kind} */ k, /** @type {string} */ f) =>
    median(rounds.map((r) => /** @type {Record<string, number>} */ (r[k])[f] ?? NaN))
  const sum = (/** @type {Kind} */ k, /** @type {string} */ f) =>
    rounds.reduce((a, r) => a + /** @type {Record<string, number>} */ (r[k][f] ?? 0), 0)
  // the run's start to serving, less the build and push: what bg-deploy adds to the build
  for (const r of rounds) r.bgDeploy.overBuildMs = r.bgDeploy.toServingMs - r.bgDeploy.buildPushMs
  /** @param {Kind} k @param {string[]} fields */
  const medians = (k, fields) => Object.fromEntries(fields.map((f) => [f, pick(k, f)]))
  const med = {
    bgDeploy: medians('bgDeploy', DEPLOY_FIELDS),
    dnatDeploy: medians('dnatDeploy', DEPLOY_FIELDS),
    classic: medians('classic', ['toServingMs', 'serverToServingMs', 'totalMs', 'serverTotalMs']),
    bgRollback: medians('bgRollback', ROLLBACK_FIELDS),
    dnatRollback: medians('dnatRollback', ROLLBACK_FIELDS),
    warmRollback: medians('warmRollback', ROLLBACK_FIELDS),
    taskDeploy: medians('taskDeploy', [...DEPLOY_FIELDS, 'taskMs'])
  }
  const failed = {
    bgDeploy: sum('bgDeploy', 'failed'),
    bgRollback: sum('bgRollback', 'failed'),
    dnatDeploy: sum('dnatDeploy', 'failed'),
    dnatRollback: sum('dnatRollback', 'failed'),
    warm: sum('warmDeploy', 'failed') + sum('warmRollback', 'failed'),
    task: sum('taskDeploy', 'failed') + sum('taskRollback', 'failed'),
    classic: sum('classic', 'failed'),
    bgRaces: sum('bgDeploy', 'races') + sum('bgRollback', 'races'),
    dnatRaces: sum('dnatDeploy', 'races') + sum('dnatRollback', 'races'),
    classicRaces: sum('classic', 'races')
  }
  const overhead = {
    serving: (med.bgDeploy.serverToServingMs ?? NaN) - ready,
    total: (med.bgDeploy.serverTotalMs ?? NaN) - ready - (med.bgDeploy.drainMs ?? NaN),
    rollback: (med.bgRollback.toServingMs ?? NaN) - ready,
    overBuild: (med.bgDeploy.overBuildMs ?? NaN) - ready
  }
  return { med, failed, overhead, sum }
}

/**
 * The goals, each with what was measured and whether it was met.
 * @param {Measured} m
 * @param {Figures} f
 * @returns {[string, string, string, boolean][]}
 */
function targetsOf(m, { med, failed, overhead }) {
  const bgFailed =
    failed.bgDeploy +
    failed.bgRollback +
    failed.dnatDeploy +
    failed.dnatRollback +
    failed.warm +
    failed.task
  const startup = median(m.startup)
  return [
    [
      'failed requests, bg-deploy deploys and rollbacks, both modes, keep-warm and a pre-switch task',
      `${bgFailed}`,
      '0',
      bgFailed === 0
    ],
    [
      "new version serving, from the run's start − build and push − app readiness",
      `${s2(overhead.overBuild)} s`,
      '≤ 0.5 s',
      overhead.overBuild <= 500
    ],
    [
      'new version serving − app readiness (server side, from the image pushed)',
      `${s2(overhead.serving)} s`,
      '≤ 0.25 s',
      overhead.serving <= 250
    ],
    [
      'total − readiness − actual drain (server side)',
      `${s2(overhead.total)} s`,
      '≤ 1 s',
      overhead.total <= 1000
    ],
    [
      'rollback, fast path (the kept container started): previous serving − readiness, from the run’s start',
      `${s2(overhead.rollback)} s`,
      '≤ 1.0 s',
      overhead.rollback <= 1000
    ],
    [
      'keep-warm rollback: previous serving, from the server script’s start',
      `${s2(med.warmRollback.fromScriptMs ?? NaN)} s (today’s fast path: ${s2(med.bgRollback.fromScriptMs ?? NaN)} s)`,
      '≤ 0.5 s',
      (med.warmRollback.fromScriptMs ?? NaN) <= 500
    ],
    [
      `keep-warm rollback from the click: previous serving, from the run’s start (${m.busy ? 'busy' : 'quiet'} machine; this machine’s floor ${s2(m.floor.sum)} s, the rows below the rollback table)`,
      `${s2(med.warmRollback.toServingMs ?? NaN)} s`,
      m.busy ? '≤ 0.8 s' : '≤ 0.5 s',
      (med.warmRollback.toServingMs ?? NaN) <= (m.busy ? 800 : 500)
    ],
    ['action start-up before the first network call', `${startup} ms`, '≤ 300 ms', startup <= 300]
  ]
}

/**
 * bg-deploy in both modes against the classic script.
 * @param {Measured} m
 * @param {Figures} f
 */
function comparisonTable(m, { med, failed, sum }) {
  const RUNS = m.runs
  const ratio = (/** @type {number | undefined} */ a, /** @type {number | undefined} */ b) =>
    a !== undefined && b ? (a / b).toFixed(2) : 'n/a'
  /** @param {string} label @param {string} f */
  const row = (label, f) =>
    `| ${label} | ${s2(med.bgDeploy[f] ?? NaN)} s | ${s2(med.dnatDeploy[f] ?? NaN)} s | ${s2(med.classic[f] ?? NaN)} s | ${ratio(med.bgDeploy[f], med.classic[f])} |`
  return [
    `| median of ${RUNS} | bg-deploy (reload) | bg-deploy (dnat) | classic script | bg-deploy (reload) / classic |`,
    '| --- | --- | --- | --- | --- |',
    row("new version serving, from the run's start", 'toServingMs'),
    row('new version serving, server side (bg-deploy: from the image pushed)', 'serverToServingMs'),
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
}

/**
 * A deploy's steps, each with its time and whether it is on the critical path.
 * @param {Measured} m
 * @param {Figures} f
 */
function criticalPathTable(m, { med }) {
  /** @param {string} label @param {string} f @param {string} path */
  const step = (label, f, path) => `| ${label} | ${s2(med.bgDeploy[f] ?? NaN)} s | ${path} |`
  return [
    `| bg-deploy (reload) deploy, median of ${m.runs} | time | on the critical path |`,
    '| --- | --- | --- |',
    step(
      'start-up and the version from the commit, until the build starts',
      'beforeBuildMs',
      'yes'
    ),
    step(
      'build and push (the push after the SSH connect and the version check with GitHub and the registry, which run during the build)',
      'buildPushMs',
      'yes'
    ),
    step(
      `draft release (GitHub answering in ${m.githubLatencyMs ?? 0} ms), from the build's start`,
      'draftMs',
      'no: during the build'
    ),
    step(
      "server script begins (then lock, checks, serving color, login), from the run's start",
      'scriptBeganMs',
      'no: during the build'
    ),
    step(
      'of which: SSH exec channel and bash start (script sent → its first step)',
      'execMs',
      'no: during the build'
    ),
    step('pull of the pushed image', 'pullMs', 'yes'),
    step('docker run of the new color', 'runMs', 'yes'),
    step('started → healthy (the app starts, polled every 0.05 s)', 'healthMs', 'yes'),
    step('healthy → nginx switched (nginx -t, reload)', 'switchMs', 'yes'),
    step('switched → first answer of the new version seen by the load', 'seenMs', 'yes'),
    step("new version serving, from the run's start", 'toServingMs', '(the sum)'),
    `| with a pre-switch task (\`true\`, a one-off container of the new image): the task, from its start to its end | ${s2(med.taskDeploy.taskMs ?? NaN)} s | yes |`,
    `| with that task: new version serving, from the run's start | ${s2(med.taskDeploy.toServingMs ?? NaN)} s | (the sum) |`
  ].join('\n')
}

/**
 * A rollback's steps: the fast path against keep-warm.
 * @param {Measured} m
 * @param {Figures} f
 */
function rollbackTable(m, { med }) {
  /** @param {string} label @param {string} f */
  const back = (label, f) =>
    `| ${label} | ${s2(med.bgRollback[f] ?? NaN)} s | ${s2(med.warmRollback[f] ?? NaN)} s |`
  return [
    `| rollback (reload), median of ${m.runs} | fast path: kept container started | keep-warm: kept running |`,
    '| --- | --- | --- |',
    back('start-up and SSH connect, until the script is sent', 'beforeSentMs'),
    back('SSH exec channel and bash start: script sent → its first step', 'execMs'),
    back('lock, checks, serving color, target, docker start: → started', 'toStartedMs'),
    back('started → healthy', 'healthMs'),
    back('healthy → nginx switched', 'switchMs'),
    back('switched → first answer of the previous version seen', 'seenMs'),
    back("previous version serving, from the run's start", 'toServingMs'),
    `| the floor on this machine, each part alone: node start ${m.floor.nodeStart} ms + SSH handshake ${m.floor.handshake} ms + one SSH command ${m.floor.exec} ms + one nginx reload ${m.floor.reload} ms | | ${s2(m.floor.sum)} s |`
  ].join('\n')
}

/** @param {[string, string, string, boolean][]} targets */
function targetTable(targets) {
  return [
    '| target | measured | goal | met |',
    '| --- | --- | --- | --- |',
    ...targets.map(([a, b, c, d]) => `| ${a} | ${b} | ${c} | ${d ? 'yes' : '**no**'} |`)
  ].join('\n')
}

/**
 * Where and how it was measured.
 * @param {Measured} m
 */
function contextOf(m) {
  const { facts, ready, startup, bundleBytes, load: LOAD } = m
  return [
    `${m.busy ? '**Busy machine**: a second load generator (32 keep-alive + 8 new-connection clients) ran throughout. ' : ''}Measured ${facts.date.slice(0, 10)} on ${facts.cpu}, ${facts.memoryGiB} GiB, ${facts.kernel}, node ${facts.node}, docker ${facts.docker}, nginx ${facts.nginx}; everything on loopback.`,
    `App readiness (docker run → first 2xx, median of 5): ${s2(ready)} s (the sample app sleeps ${m.startUp} s). Bundle: dist/index.js ${(bundleBytes / 2 ** 20).toFixed(2)} MiB; start-up before the first network call: median ${median(startup)} ms of 10.`,
    `Load in every run: ${LOAD.keepalive} keep-alive clients, ${LOAD.fresh} opening a new connection per request, ${LOAD.slow} keeping a 3 s request in flight.`
  ].join('\n')
}

/**
 * The switch modes per switch, for docs/switch-modes.md.
 * @param {Measured} m
 * @param {Figures} f
 */
function modesTable(m, { med, failed }) {
  const { facts, load: LOAD, runs: RUNS } = m
  const switches = 2 * RUNS
  const perSwitch = (/** @type {number} */ n) => (n / switches).toFixed(2)
  return [
    `Measured by \`npm run bench\` (${facts.date.slice(0, 10)}, same run, same load: ${LOAD.keepalive} keep-alive clients that retry a reset reused connection once as browsers do, ${LOAD.fresh} new-connection clients, ${LOAD.slow} slow requests in flight), ${RUNS} deploys and ${RUNS} rollbacks in each mode:`,
    '',
    '| per switch (deploy or rollback) | reload | dnat |',
    '| --- | --- | --- |',
    `| failed requests (non-2xx or connection error) | ${perSwitch(failed.bgDeploy + failed.bgRollback)} | ${perSwitch(failed.dnatDeploy + failed.dnatRollback)} |`,
    `| keep-alive races (reset on a reused connection, retried) | ${perSwitch(failed.bgRaces)} | ${perSwitch(failed.dnatRaces)} |`,
    `| new version serving, server side: from the image pushed (median) | ${s2(med.bgDeploy.serverToServingMs ?? NaN)} s | ${s2(med.dnatDeploy.serverToServingMs ?? NaN)} s |`
  ].join('\n')
}

/**
 * Every table the docs pages show, and the results file, from what bench/run.mjs measured.
 * @param {Measured} m
 */
export function report(m) {
  const f = figuresOf(m)
  const targets = targetsOf(m, f)
  const results = {
    machine: m.facts,
    runs: m.runs,
    load: m.load,
    appStartUpSeconds: m.startUp,
    readinessMs: m.readiness,
    startupMs: m.startup,
    floorMs: m.floor,
    bundleBytes: m.bundleBytes,
    medians: f.med,
    failed: f.failed,
    overheadMs: f.overhead,
    busy: m.busy === true,
    githubLatencyMs: m.githubLatencyMs,
    targets: targets.map(([t, v, g, ok]) => ({ target: t, measured: v, goal: g, met: ok })),
    rounds: m.rounds
  }
  return {
    table: comparisonTable(m, f),
    pathTable: `${criticalPathTable(m, f)}\n\n${rollbackTable(m, f)}`,
    targetTable: targetTable(targets),
    context: contextOf(m),
    modes: modesTable(m, f),
    results
  }
}

/**
 * Put the tables into the docs pages between their markers: bench (and bench-busy for a run on a
 * busy machine) in docs/benchmark.md, modes in docs/switch-modes.md, hosts in
 * docs/several-servers.md, swarm in docs/swarm.md.
 * @param {string} root the repository
 * @param {{ table: string, pathTable: string, targetTable: string, context: string, modes: string, hosts?: string, swarm?: string, busy?: boolean }} r
 * @param {string} chartPath the chart, relative to the repository
 */
export async function updateDocs(root, r, chartPath) {
  const page = (/** @type {string} */ name) => path.join(root, 'docs', name)
  if (r.busy) {
    await updateMarkers(
      page('benchmark.md'),
      'bench-busy',
      `${r.context}\n\n${r.table}\n\n${r.pathTable}\n\n${r.targetTable}`
    )
    return
  }
  await updateMarkers(
    page('benchmark.md'),
    'bench',
    `${r.context}\n\n${r.table}\n\n${r.pathTable}\n\n${r.targetTable}\n\n![version served over time](../${chartPath})`
  )
  await updateMarkers(page('switch-modes.md'), 'modes', r.modes)
  if (r.hosts) await updateMarkers(page('several-servers.md'), 'hosts', r.hosts)
  if (r.swarm) await updateMarkers(page('swarm.md'), 'swarm', r.swarm)
}

/**
 * Put `table` into a markdown file between its `<!-- NAME:start -->` and `<!-- NAME:end -->`.
 * @param {string} file
 * @param {string} name
 * @param {string} table
 */
export async function updateMarkers(file, name, table) {
  const text = readFileSync(file, 'utf8')
  const re = new RegExp(`(<!-- ${name}:start -->\n)[\\s\\S]*?(<!-- ${name}:end -->)`)
  if (!re.test(text)) throw new Error(`${file} has no ${name} markers`)
  await writeFormatted(file, text.replace(re, `$1${table}\n$2`))
}

/**
 * Write a file the way the repository's formatter (prettier, a dev dependency) leaves it, so that
 * committed results pass `npm run lint`.
 * @param {string} file
 * @param {string} text
 */
export async function writeFormatted(file, text) {
  try {
    const prettier = await import('prettier')
    const options = (await prettier.resolveConfig(file)) ?? {}
    writeFileSync(file, await prettier.format(text, { ...options, filepath: file }))
  } catch {
    writeFileSync(file, text) // without dev dependencies: unformatted, still correct
  }
}
