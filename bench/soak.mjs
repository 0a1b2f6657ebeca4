// The soak: many runs in a row on one server (the loopback services), under load, in a fixed
// cycle of ten: deploys of good versions, a rollback (previous), and a version that answers 500
// to everything a second after it starts, which the watch switches back. After every run it
// measures what the app leaves behind on the server, and at the end says whether each of those
// stayed bounded (no growth over the second half of the runs) and whether the lock was free
// after every run.
//
//   npm run soak                      100 runs (about 15 minutes)
//   node bench/soak.mjs --runs 10     the short version CI runs (scripts/test-all.sh)
//   --out DIR                         where soak.json goes (default .e2e/soak)
//   --docs                            puts the table into docs/benchmark.md (soak markers)
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs'
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
  services,
  writeSite
} from '../scripts/harness/index.mjs'

const argv = process.argv.slice(2)
const opt = (/** @type {string} */ name, /** @type {string} */ d) => {
  const i = argv.indexOf(name)
  return i >= 0 ? (argv[i + 1] ?? d) : d
}
const RUNS = Number(opt('--runs', '100'))
const OUT = path.resolve(opt('--out', '.e2e/soak'))
const APP = 'bgsoak'
const PORT = 18300
const REPO = 'bench/soak'
const LOAD = { keepalive: 8, fresh: 2, slow: 1 }
const say = (/** @type {string} */ s) => process.stdout.write(`${s}\n`)

/** The registry's tags of the soak's repository. */
async function registryTags(/** @type {string} */ registry) {
  const r = await fetch(`http://${registry}/v2/${REPO}/tags/list`)
  return r.ok ? (/** @type {{ tags: string[] | null }} */ (await r.json()).tags ?? []) : []
}

/** What the app leaves on the server now. */
function leftovers(/** @type {import('../scripts/harness/index.mjs').Services} */ svc) {
  const sh = (/** @type {string} */ cmd) =>
    spawnSync('bash', ['-c', cmd], { encoding: 'utf8' }).stdout.trim()
  const state = `/var/lib/bg-deploy/${APP}`
  return {
    containers: Number(sh(`docker ps -aq --filter name=^${APP}- | wc -l`)),
    running: Number(sh(`docker ps -q --filter name=^${APP}- | wc -l`)),
    // the version images kept (the runner builds in the same engine here, so only tagged versions)
    images: Number(
      sh(`docker images ${svc.registry}/${REPO} --format '{{.Tag}}' | grep -c '^v' || true`)
    ),
    stateBytes: Number(sh(`du -sb ${state} 2>/dev/null | cut -f1`) || 0),
    stateFiles: Number(sh(`find ${state} -type f 2>/dev/null | wc -l`)),
    historyRows: Number(sh(`wc -l < ${state}/history 2>/dev/null`) || 0),
    specs: Number(sh(`ls ${state}/specs 2>/dev/null | wc -l`)),
    // bg-deploy's own processes left running (a script, a keep-warm timer, a watch)
    processes: Number(sh(`pgrep -fc 'bash -s -- .*app=${APP}( |$)' || true`)),
    lockFree: spawnSync('flock', ['-n', `${state}/lock`, 'true']).status === 0 || !existsSync(state)
  }
}

async function main() {
  const svc = services()
  await forgetRepository(svc.registry, REPO)
  removeApp(svc, APP, [`/var/lib/bg-deploy/${APP}`])
  const wsDir = path.join(svc.dir, 'soak-app')
  rmSync(wsDir, { recursive: true, force: true })
  const ws = makeWorkspace({ version: 'v1.0.0' }, 'release v1.0.0', wsDir)
  writeSite(svc, APP, PORT)
  const inputs = {
    ...loopbackInputs(svc, { app: APP, repository: REPO, port: PORT }),
    'create-release': 'false',
    watch: '3'
  }
  const run = async (/** @type {Record<string, string>} */ extra = {}, dispatch = false) => {
    const sha = headSha(ws)
    const r = await runAction(
      { ...inputs, ...extra },
      dispatch
        ? { workspace: ws, sha, eventName: 'workflow_dispatch', event: {} }
        : { workspace: ws, sha, event: { head_commit: { id: sha, message: headMessage(ws) } } }
    )
    // the script's lock, as the next run would take it
    spawnSync('flock', ['-w', '60', `/var/lib/bg-deploy/${APP}/lock`, 'true'])
    return r
  }
  const first = await run()
  if (first.code !== 0) throw new Error(`v1.0.0 failed:\n${first.log}`)
  /** @type {{ i: number, op: string, code: number | null, ms: number, failed: number, requests: number, left: ReturnType<typeof leftovers>, tags: number }[]} */
  const rows = []
  let minor = 0
  const t0 = Date.now()
  for (let i = 1; i <= RUNS; i++) {
    const kind = i % 10 === 5 ? 'rollback' : i % 10 === 8 ? 'bad' : 'deploy'
    let version = ''
    if (kind !== 'rollback') {
      minor++
      version = `v1.${minor}.0`
      commitAppVersion(
        ws,
        kind === 'bad'
          ? { version, failsLater: { after: 1, inTen: 10 } }
          : { version, startDelay: 0 }
      )
    }
    const load = await new Load().start(`http://127.0.0.1:${PORT}/`, LOAD)
    const started = Date.now()
    const r = kind === 'rollback' ? await run({ rollback: 'previous' }, true) : await run()
    const ms = Date.now() - started
    const stats = await load.stop()
    const expected = kind === 'bad' ? 1 : 0
    if (r.code !== expected)
      throw new Error(`run ${i} (${kind} ${version}) exited ${r.code}, not ${expected}:\n${r.log}`)
    if (kind === 'bad' && !/the watch window switched back from/.test(r.log))
      throw new Error(`run ${i}: ${version} was not switched back by the watch:\n${r.log}`)
    const failed = stats.non2xx + stats.errors
    if (kind !== 'bad' && failed > 0)
      throw new Error(`run ${i} (${kind} ${version}): ${failed} failed requests`)
    const row = {
      i,
      op:
        kind === 'rollback'
          ? 'rollback previous'
          : kind === 'bad'
            ? `${version} (switched back)`
            : version,
      code: r.code,
      ms,
      failed,
      requests: stats.requests,
      left: leftovers(svc),
      tags: (await registryTags(svc.registry)).length
    }
    rows.push(row)
    if (!row.left.lockFree) throw new Error(`run ${i}: the lock is still held after the run`)
    if (i === 1 || i % Math.max(1, Math.floor(RUNS / 10)) === 0 || i === RUNS)
      say(
        `${String(i).padStart(4)} ${row.op.padEnd(26)} ${(ms / 1000).toFixed(1).padStart(5)} s  failed ${String(failed).padStart(4)} of ${String(stats.requests).padStart(6)}  containers ${row.left.containers} (running ${row.left.running})  images ${row.left.images}  state ${row.left.stateBytes} B in ${row.left.stateFiles} files  history ${row.left.historyRows}  specs ${row.left.specs}  processes ${row.left.processes}  tags ${row.tags}`
      )
  }
  // bounded: each measure against the bound bg-deploy enforces (and says where), checked on every
  // run, not only at the end
  /** @type {Record<string, [number, string]>} */
  const LIMITS = {
    containers: [2, 'the two colors; a deploy replaces the idle one (stop.sh keeps one stopped)'],
    running: [2, 'the serving color, and the old one only during a run or keep-warm'],
    images: [6, 'stop.sh keeps the last three versions and those the colors use'],
    historyRows: [1200, 'HISTORY_KEEP: trimmed to 1,000 rows once it holds 1,200'],
    specs: [11, 'SPEC_KEEP: the run specs of the 10 newest versions in the history, and this one'],
    stateFiles: [30, 'the state, history, journal, logs and the specs above'],
    stateBytes: [
      4 * 1024 * 1024,
      "one run's watch log (started anew at each window) and the rows above"
    ],
    processes: [0, 'every job of a run ends with it (keep-warm off)']
  }
  /** @type {Record<string, { min: number, max: number, limit: number, why: string, bounded: boolean }>} */
  const bounds = {}
  for (const [k, [limit, why]] of Object.entries(LIMITS)) {
    const v = rows.map(
      (r) => /** @type {Record<string, number>} */ (/** @type {unknown} */ (r.left))[k] ?? 0
    )
    bounds[k] = {
      min: Math.min(...v),
      max: Math.max(...v),
      limit,
      why,
      bounded: Math.max(...v) <= limit
    }
  }
  const byKind = (/** @type {string} */ k) =>
    rows.filter((r) =>
      k === 'bad'
        ? /switched back/.test(r.op)
        : k === 'rollback'
          ? r.op === 'rollback previous'
          : /^v/.test(r.op) && !/switched/.test(r.op)
    )
  const failedGood = rows
    .filter((r) => !/switched back/.test(r.op))
    .reduce((n, r) => n + r.failed, 0)
  const failedBad = byKind('bad').reduce((n, r) => n + r.failed, 0)
  const table = [
    `| ${RUNS} runs in a row on one server, under load | |`,
    '| --- | --- |',
    `| deploys / rollbacks / watch switch-backs | ${byKind('deploy').length} / ${byKind('rollback').length} / ${byKind('bad').length} |`,
    `| failed requests, deploys and rollbacks | ${failedGood} of ${rows.filter((r) => !/switched back/.test(r.op)).reduce((n, r) => n + r.requests, 0)} |`,
    `| failed requests, switch-backs (a version answering 500 to all, until the watch switched back) | ${failedBad} of ${byKind('bad').reduce((n, r) => n + r.requests, 0)} |`,
    `| lock free after every run | ${rows.every((r) => r.left.lockFree) ? 'yes' : '**no**'} |`,
    ...Object.entries(bounds).map(
      ([k, b]) =>
        `| ${k} after each run (min–max; bound) | ${b.min}–${b.max}; ≤ ${b.limit}: ${b.bounded ? 'held' : '**exceeded**'} (${b.why}) |`
    ),
    `| registry tags (one per version pushed; the registry's own retention) | ${rows.at(-1)?.tags} |`,
    `| the whole soak | ${((Date.now() - t0) / 60000).toFixed(1)} min |`
  ].join('\n')
  say(`\n${table}\n`)
  mkdirSync(OUT, { recursive: true })
  writeFileSync(path.join(OUT, 'soak.json'), JSON.stringify({ runs: RUNS, rows, bounds }, null, 1))
  if (argv.includes('--docs')) {
    const { updateMarkers } = await import('./report.mjs')
    const { ROOT } = await import('../scripts/harness/index.mjs')
    await updateMarkers(path.join(ROOT, 'docs/benchmark.md'), 'soak', table)
    say('docs/benchmark.md: the soak table updated')
  }
  if (!argv.includes('--keep')) removeApp(svc, APP, [])
  const grows = Object.entries(bounds).filter(([, b]) => !b.bounded)
  if (grows.length > 0) {
    say(`over the bound: ${grows.map(([k]) => k).join(', ')}`)
    process.exitCode = 1
  }
}

await main()
