// A real application on one server, end to end under load: the pre-switch task (a migration) runs
// once per deploy with the app's env, before the new color starts; its failure or timeout leaves
// the old version serving; and a rollback with only `rollback: previous` puts the old version back
// as it ran (its env, health path and run arguments), from the run spec the server recorded.
import { mkdtempSync, readFileSync, statSync, chmodSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import {
  Load,
  appContainers,
  appFixture,
  commitVersion,
  deployApp,
  docker,
  expectOk,
  historyRows,
  httpGet,
  rollbackApp,
  settled,
  stateDir,
  timelineOf,
  type TestApp
} from './helpers.js'

const fixture = appFixture()

/** The task: appends one line (a count, and the env it saw) to /data/tasks on the host. */
const TASK = `sh -c 'echo "migrated $GREETING" >> /data/tasks; echo "migration of $GREETING done"'`

function taskLines(dir: string): string[] {
  try {
    return readFileSync(path.join(dir, 'tasks'), 'utf8').trim().split('\n').filter(Boolean)
  } catch {
    return []
  }
}

describe('pre-switch task and a rollback as it ran, one server', () => {
  let a: TestApp
  let data: string
  beforeAll(async () => {
    data = mkdtempSync(path.join(tmpdir(), 'bgd-task-'))
    chmodSync(data, 0o777)
    a = fixture.newApp(
      'task',
      { version: 'v1.0.0' },
      {
        env: 'GREETING=hello-v1',
        'health-path': '/health',
        'docker-run-args': `--label bg-deploy.test=1 -v ${data}:/data`,
        'pre-switch-command': TASK
      }
    )
    expectOk(await deployApp(a))
    settled(a)
  }, 120_000)

  test('the task runs once per deploy, with the env, before the new color starts; a re-run of the version does not run it again', async () => {
    expect(taskLines(data)).toEqual(['migrated hello-v1'])
    commitVersion(a, { version: 'v2.0.0', startDelay: 1 })
    const load = await new Load().start(a.url)
    const run = await deployApp(a, { inputs: { env: 'GREETING=hello-v2' } })
    const stats = await load.stop()
    expectOk(run)
    expect(taskLines(data)).toEqual(['migrated hello-v1', 'migrated hello-v2'])
    // its output streams into the log, and it ends before the new color starts
    expect(run.log).toMatch(/task\| migration of hello-v2 done/)
    const t = timelineOf(run.outputs)
    expect(t.tasked).toBeLessThanOrEqual(t.started ?? NaN)
    expect(t.task).toBeGreaterThanOrEqual(t.pulled ?? t.begin ?? NaN)
    expect((await httpGet(a.url)).body).toBe('v2.0.0\n')
    expect((await httpGet(`${a.url}cgi-bin/env?GREETING`)).body).toBe('hello-v2\n')
    expect(stats).toMatchObject({ non2xx: 0, errors: 0, slowFailed: 0 })
    console.log(
      `pre-switch task, one server: ${(t.tasked ?? NaN) - (t.task ?? NaN)} ms on the critical path (task start to end); deploy under load: ${stats.requests} requests, ${stats.non2xx + stats.errors} failed`
    )
    settled(a)
    // the same version again: the task is not run a second time
    const again = await deployApp(a, { inputs: { env: 'GREETING=hello-v2' } })
    expectOk(again)
    expect(again.log).toMatch(/it succeeded for v2\.0\.0 on this server already .*not run again/)
    expect(taskLines(data)).toHaveLength(2)
    settled(a)
  }, 180_000)

  test('a failing task: the run fails with its exit code and last lines, nothing starts, the old version serves; a task past its timeout likewise', async () => {
    commitVersion(a, { version: 'v3.0.0' })
    const load = await new Load().start(a.url)
    const failed = await deployApp(a, {
      inputs: {
        env: 'GREETING=hello-v3',
        'pre-switch-command': `sh -c 'echo "applying 0042"; echo "relation users has no column x" >&2; exit 7'`
      }
    })
    expect(failed.code).toBe(1)
    expect(failed.log).toMatch(
      /the pre-switch task .* failed with exit code 7\. Nothing was started or switched/
    )
    expect(failed.log).toMatch(/relation users has no column x/)
    expect(failed.summary).toMatch(/failed with exit code 7/)
    expect(historyRows(a).at(-1)?.[7]).toBe('failed-task')
    settled(a)
    const slow = await deployApp(a, {
      inputs: {
        env: 'GREETING=hello-v3',
        'pre-switch-command': 'sleep 30',
        'pre-switch-timeout': '2'
      }
    })
    const stats = await load.stop()
    expect(slow.code).toBe(1)
    expect(slow.log).toMatch(/did not end within 2s \(pre-switch-timeout\) and was stopped/)
    expect(slow.ms).toBeLessThan(25_000)
    // v2 serves, no container of v3 and no task container is left
    expect((await httpGet(a.url)).body).toBe('v2.0.0\n')
    const left = Object.keys(appContainers(a))
    expect(left.filter((n) => n.endsWith('-task'))).toEqual([])
    expect(
      docker(
        'ps',
        '-a',
        '--filter',
        `label=bg-deploy.app=${a.name}`,
        '--format',
        '{{.Label "bg-deploy.version"}}'
      )
        .trim()
        .split('\n')
    ).not.toContain('v3.0.0')
    expect(stats).toMatchObject({ non2xx: 0, errors: 0, slowFailed: 0 })
    expect(taskLines(data)).toHaveLength(2)
    settled(a)
  }, 180_000)

  test('rollback with only `rollback: previous`, slow path: v1 comes back with its env, health path and run arguments; never the task', async () => {
    // the spec of each version, owner-only in the owner-only state directory
    const specs = path.join(stateDir(a), 'specs')
    expect(statSync(specs).mode & 0o777).toBe(0o700)
    expect(statSync(path.join(specs, 'v1.0.0')).mode & 0o777).toBe(0o600)
    // the rollback job of the example: no env, no health path, no run arguments, no task
    const bare = Object.fromEntries(
      Object.entries(a.inputs).filter(
        ([k]) => !['env', 'health-path', 'docker-run-args', 'pre-switch-command'].includes(k)
      )
    )
    const load = await new Load().start(a.url)
    const run = await rollbackApp({ ...a, inputs: bare }, 'previous')
    const stats = await load.stop()
    expectOk(run)
    // the re-run of v2 took v1's color, so nothing of v1 is kept: the slow path
    expect(run.log).toMatch(/slow path: no kept container for v1\.0\.0/)
    expect(run.log).toMatch(
      /putting v1\.0\.0 back as it ran: container_port, health_path, task, env \(1 variable\(s\)\), docker run arguments \(4\) from its record/
    )
    expect(run.log).toMatch(/polling http:\/\/\S+\/health /)
    expect(run.log).not.toMatch(/pre-switch task: running/)
    expect((await httpGet(a.url)).body).toBe('v1.0.0\n')
    expect((await httpGet(`${a.url}cgi-bin/env?GREETING`)).body).toBe('hello-v1\n')
    expect(
      docker(
        'inspect',
        '-f',
        '{{index .Config.Labels "bg-deploy.test"}} {{range .Mounts}}{{.Source}}{{end}}',
        `${a.name}-green`
      ).trim()
    ).toBe(`1 ${data}`)
    expect(stats).toMatchObject({ non2xx: 0, errors: 0, slowFailed: 0 })
    expect(taskLines(data)).toHaveLength(2)
    settled(a)
    // an input the rollback sets itself wins, and the run says so
    const own = await rollbackApp({ ...a, inputs: bare }, 'previous', { env: 'GREETING=override' })
    expectOk(own)
    expect(own.log).toMatch(/this run sets its own env/)
    expect((await httpGet(`${a.url}cgi-bin/env?GREETING`)).body).toBe('override\n')
  }, 180_000)
})

/** Lines `UPTIME ID VERSION` a worker writes every 0.2 s, as [seconds, id, version]. */
function ticks(file: string): [number, string, string][] {
  try {
    return readFileSync(file, 'utf8')
      .trim()
      .split('\n')
      .filter(Boolean)
      .map((l) => l.split(' '))
      .map(([t, id, v]) => [Number(t), id!, v!])
  } catch {
    return []
  }
}

/** The longest time without a tick between the first and the last one, in seconds. */
function longestGap(ts: [number, string, string][]): number {
  const t = ts.map(([x]) => x).sort((a, b) => a - b)
  return t.slice(1).reduce((gap, x, i) => Math.max(gap, x - t[i]!), 0)
}

/**
 * Every pair of runs of different writers that overlap in time (two at once). A run is a writer's
 * ticks without a pause over 1 s: a container stopped and started again makes two runs.
 */
function overlaps(ts: [number, string, string][]): string[] {
  const runs: { id: string; from: number; to: number }[] = []
  const last = new Map<string, { id: string; from: number; to: number }>()
  for (const [t, id] of [...ts].sort((a, b) => a[0] - b[0])) {
    const r = last.get(id)
    if (r && t - r.to <= 1) r.to = t
    else {
      const run = { id, from: t, to: t }
      runs.push(run)
      last.set(id, run)
    }
  }
  const out: string[] = []
  for (let i = 0; i < runs.length; i++)
    for (let j = i + 1; j < runs.length; j++) {
      const a = runs[i]!
      const b = runs[j]!
      if (a.id !== b.id && a.from <= b.to && b.from <= a.to)
        out.push(`${a.id} [${a.from}, ${a.to}] and ${b.id} [${b.from}, ${b.to}]`)
    }
  return out
}

/** A worker that writes a tick every 0.2 s into /data/FILE: uptime, its container, its env. */
const tick = (file: string) =>
  `sh -c 'while true; do echo "$(cut -d" " -f1 /proc/uptime) $(hostname) $GREETING" >> /data/${file}; sleep 0.2; done'`

describe('workers swap with the web, one server', () => {
  let a: TestApp
  let data: string
  const workers = [
    `jobs: ${tick('jobs')}`,
    `scheduler single stop-timeout=5: ${tick('sched')}`
  ].join('\n')
  beforeAll(async () => {
    data = mkdtempSync(path.join(tmpdir(), 'bgd-workers-'))
    chmodSync(data, 0o777)
    a = fixture.newApp(
      'wrk',
      { version: 'v1.0.0' },
      {
        env: 'GREETING=v1',
        'health-path': '/health',
        'docker-run-args': `--label bg-deploy.test=1 -v ${data}:/data`,
        workers
      }
    )
    expectOk(await deployApp(a))
    settled(a)
  }, 120_000)

  test('v1 → v2 under load: the new workers are up before the switch, the old ones stop after it; never a moment without a job worker, never two schedulers; 0 failed', async () => {
    commitVersion(a, { version: 'v2.0.0', startDelay: 1 })
    const load = await new Load().start(a.url)
    const run = await deployApp(a, { inputs: { env: 'GREETING=v2' } })
    const stats = await load.stop()
    expectOk(run)
    settled(a)
    expect(run.log).toMatch(/workers \(regular\) of green up for 3s: jobs/)
    expect(run.log).toMatch(/worker scheduler \(single\): stopping \S+-blue-scheduler first/)
    // the scheduler swap and the worker check come before the switch (both lines on the script's
    // stderr, so in order; its phase markers travel on stdout)
    expect(run.log.indexOf('workers (single) of green up')).toBeLessThan(
      run.log.indexOf('nginx now sends')
    )
    const jobs = ticks(path.join(data, 'jobs'))
    const sched = ticks(path.join(data, 'sched'))
    const gap = longestGap(jobs)
    console.log(
      `workers, one server: ${jobs.length} job-worker ticks, longest moment without one ${gap.toFixed(2)} s; ${new Set(sched.map(([, id]) => id)).size} schedulers, overlaps: ${overlaps(sched).length}; deploy ${run.ms} ms, ${stats.requests} requests, ${stats.non2xx + stats.errors} failed`
    )
    expect(gap).toBeLessThan(1)
    expect(overlaps(sched)).toEqual([])
    expect(new Set(jobs.map(([, , v]) => v))).toEqual(new Set(['v1', 'v2']))
    expect(sched.at(-1)?.[2]).toBe('v2')
    expect(stats).toMatchObject({ non2xx: 0, errors: 0, slowFailed: 0 })
    expect(appContainers(a)).toMatchObject({
      [`${a.name}-green-jobs`]: 'running',
      [`${a.name}-green-scheduler`]: 'running',
      [`${a.name}-blue-jobs`]: 'exited',
      [`${a.name}-blue-scheduler`]: 'exited'
    })
  }, 180_000)

  test('a worker that will not stay up fails the deploy before the switch: v2 and its workers run on, nothing changed', async () => {
    commitVersion(a, { version: 'v3.0.0' })
    const run = await deployApp(a, {
      inputs: {
        env: 'GREETING=v3',
        workers: `jobs: sh -c 'echo cannot reach the queue; exit 4'\nscheduler single: ${tick('sched')}`
      }
    })
    expect(run.code).toBe(1)
    expect(run.log).toMatch(/worker jobs \(\S+-blue-jobs\) did not stay up for 3s/)
    expect(run.log).toMatch(/cannot reach the queue/)
    expect(run.log).toMatch(/Nothing was switched/)
    expect(historyRows(a).at(-1)?.[7]).toBe('failed-workers')
    expect((await httpGet(a.url)).body).toBe('v2.0.0\n')
    expect(appContainers(a)).toMatchObject({
      [`${a.name}-green`]: 'running',
      [`${a.name}-green-jobs`]: 'running',
      [`${a.name}-green-scheduler`]: 'running'
    })
    expect(Object.keys(appContainers(a))).not.toContain(`${a.name}-blue-jobs`)
    settled(a)
  }, 120_000)

  test('rollback with only `rollback: previous`: v1 comes back with its workers and env; the schedulers never overlap', async () => {
    const bare = Object.fromEntries(
      Object.entries(a.inputs).filter(
        ([k]) => !['env', 'health-path', 'docker-run-args', 'workers'].includes(k)
      )
    )
    const load = await new Load().start(a.url)
    const run = await rollbackApp({ ...a, inputs: bare }, 'previous')
    const stats = await load.stop()
    expectOk(run)
    settled(a)
    expect((await httpGet(a.url)).body).toBe('v1.0.0\n')
    const jobs = ticks(path.join(data, 'jobs'))
    const sched = ticks(path.join(data, 'sched'))
    expect(jobs.at(-1)?.[2]).toBe('v1')
    expect(sched.at(-1)?.[2]).toBe('v1')
    expect(overlaps(sched)).toEqual([])
    expect(longestGap(jobs)).toBeLessThan(1)
    expect(stats).toMatchObject({ non2xx: 0, errors: 0, slowFailed: 0 })
    expect(appContainers(a)).toMatchObject({
      [`${a.name}-blue-jobs`]: 'running',
      [`${a.name}-blue-scheduler`]: 'running',
      [`${a.name}-green-jobs`]: 'exited',
      [`${a.name}-green-scheduler`]: 'exited'
    })
  }, 180_000)

  test('the watch switches back from a version that fails after the switch: its workers stop, the old scheduler runs again, never two', async () => {
    commitVersion(a, { version: 'v5.0.0', failsLater: { after: 2, inTen: 5 } })
    // traffic for the watch to judge (v5 answers 500 to half of it from 2 s after its start)
    const load = await new Load().start(a.url)
    const run = await deployApp(a, { inputs: { env: 'GREETING=v5', workers, watch: '15' } })
    await load.stop()
    expect(run.code).toBe(1)
    expect(run.log).toMatch(/the watch window switched back from v5\.0\.0/)
    settled(a)
    expect((await httpGet(a.url)).body).toBe('v1.0.0\n')
    expect(appContainers(a)).toMatchObject({
      [`${a.name}-blue-jobs`]: 'running',
      [`${a.name}-blue-scheduler`]: 'running',
      [`${a.name}-green-jobs`]: 'exited',
      [`${a.name}-green-scheduler`]: 'exited'
    })
    const sched = ticks(path.join(data, 'sched'))
    expect(overlaps(sched)).toEqual([])
    expect(sched.at(-1)?.[2]).toBe('v1')
    expect(new Set(sched.map(([, , v]) => v))).toContain('v5')
  }, 180_000)

  test('keep-warm keeps the old web running, not its workers; a rollback within it starts them again', async () => {
    commitVersion(a, { version: 'v6.0.0' })
    expectOk(await deployApp(a, { inputs: { env: 'GREETING=v6', workers, 'keep-warm': '600' } }))
    settled(a)
    // v1 served from blue before: its web stays warm, its workers stopped
    expect(appContainers(a)).toMatchObject({
      [`${a.name}-blue`]: 'running',
      [`${a.name}-blue-jobs`]: 'exited',
      [`${a.name}-blue-scheduler`]: 'exited',
      [`${a.name}-green-jobs`]: 'running',
      [`${a.name}-green-scheduler`]: 'running'
    })
    const back = await rollbackApp(a, 'previous', { 'keep-warm': '600' })
    expectOk(back)
    expect(back.log).toMatch(/fast path: \S+ is running still \(kept warm\): a switch only/)
    expect(back.log).toMatch(/worker jobs: starting the kept \S+-blue-jobs/)
    settled(a)
    expect((await httpGet(a.url)).body).toBe('v1.0.0\n')
    expect(appContainers(a)).toMatchObject({
      [`${a.name}-blue-jobs`]: 'running',
      [`${a.name}-blue-scheduler`]: 'running',
      [`${a.name}-green-jobs`]: 'exited',
      [`${a.name}-green-scheduler`]: 'exited'
    })
    expect(overlaps(ticks(path.join(data, 'sched')))).toEqual([])
  }, 180_000)
})
