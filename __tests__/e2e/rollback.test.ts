// Rollback end to end: rollback from a workflow_dispatch input, fast and slow path, under load.
import path from 'node:path'
import { execFileSync, spawn } from 'node:child_process'
import { mkdirSync } from 'node:fs'
import {
  Load,
  appContainers,
  commitVersion,
  deployApp,
  docker,
  expectOk,
  httpGet,
  appFixture,
  sleep,
  type LoadStats,
  type TestApp,
  stateDir,
  rollbackApp
} from './helpers.js'

const fixture = appFixture()

/** An app that served v1 and now serves v2 (v1's container kept, stopped). */
async function v1ThenV2(prefix: string): Promise<TestApp> {
  const a = fixture.newApp(prefix, { version: 'v1.0.0', startDelay: 1 })
  expectOk(await deployApp(a))
  commitVersion(a, { version: 'v2.0.0', startDelay: 1 })
  expectOk(await deployApp(a))
  expect((await httpGet(a.url)).body).toBe('v2.0.0\n')
  return a
}

/** A rollback, and when it started. */
async function rollback(a: TestApp, target: string) {
  const t0 = Date.now()
  return { run: await rollbackApp(a, target), t0 }
}

/** ms from the start of the run until the load generator first saw `version`. */
function timeToServe(stats: LoadStats, load: Load, t0: number, version: string): number {
  const v = stats.versions[version]
  return v ? v.first + load.startedAt - t0 : NaN
}

test('v1 → v2 → rollback previous (fast path) serves v1 with 0 failed requests; again → v2; explicit v1', async () => {
  const a = await v1ThenV2('rb')
  const load = await new Load().start(a.url)
  const { run, t0 } = await rollback(a, 'previous')
  expectOk(run)
  expect(run.log).toMatch(/fast path: starting the kept container/)
  expect(run.log).not.toMatch(/docker build|Release /)
  expect(run.outputs).toMatchObject({
    version: 'v1.0.0',
    deployed: 'true',
    color: 'blue',
    'previous-color': 'green'
  })
  expect((await httpGet(a.url)).body).toBe('v1.0.0\n')
  expect(run.summary).toMatch(/Recent deploys on the server/)

  const back = await rollback(a, 'previous')
  expectOk(back.run)
  expect(back.run.outputs.version).toBe('v2.0.0')
  expect((await httpGet(a.url)).body).toBe('v2.0.0\n')

  const explicit = await rollback(a, 'v1.0.0')
  expectOk(explicit.run)
  const stats = await load.stop()
  expect(explicit.run.outputs.version).toBe('v1.0.0')
  expect(stats).toMatchObject({ non2xx: 0, errors: 0, slowFailed: 0 })
  console.log(
    `rollback fast path: previous version serving ${timeToServe(stats, load, t0, 'v1.0.0')} ms after the rollback run started ` +
      `(run total ${run.ms} ms, app start-up 1 s); 3 rollbacks under load: ${stats.requests} requests, ` +
      `${stats.non2xx + stats.errors} failed, ${stats.races} keep-alive races retried`
  )
  const history = execFileSync('cut', ['-f4,5,8', path.join(stateDir(a), 'history')]).toString()
  expect(history.trim().split('\n')).toEqual([
    'deploy\tv1.0.0\tok',
    'deploy\tv2.0.0\tok',
    'rollback\tv1.0.0\tok',
    'rollback\tv2.0.0\tok',
    'rollback\tv1.0.0\tok'
  ])
}, 240_000)

test('slow path: the kept container is gone, the image comes from the registry', async () => {
  const a = await v1ThenV2('rbslow')
  docker('rm', '-f', `${a.name}-blue`)
  docker('rmi', `${a.inputs.image}:v1.0.0`)
  const load = await new Load().start(a.url)
  const { run, t0 } = await rollback(a, 'previous')
  const stats = await load.stop()
  expectOk(run)
  expect(run.log).toMatch(/slow path: no kept container for v1.0.0/)
  expect((await httpGet(a.url)).body).toBe('v1.0.0\n')
  expect(stats).toMatchObject({ non2xx: 0, errors: 0, slowFailed: 0 })
  console.log(
    `rollback slow path: previous version serving ${timeToServe(stats, load, t0, 'v1.0.0')} ms after the rollback run started (run total ${run.ms} ms, app start-up 1 s)`
  )
}, 240_000)

test('nothing to roll back to: a clear error listing what is deployed; the serving version is untouched', async () => {
  const a = fixture.newApp('rbnone', { version: 'v1.0.0' })
  expectOk(await deployApp(a))
  const { run } = await rollback(a, 'previous')
  expect(run.code).toBe(1)
  expect(run.log).toMatch(
    /no earlier version of \S+ to roll back to \(serving: v1.0.0; deployed here: v1.0.0\)/
  )
  const unknown = await rollback(a, 'v7.7.7')
  expect(unknown.run.code).toBe(1)
  expect(unknown.run.log).toMatch(
    /cannot roll back to v7.7.7: its image \S+:v7.7.7 is neither on the server nor in the registry. Versions deployed here: v1.0.0/
  )
  expect((await httpGet(a.url)).body).toBe('v1.0.0\n')
  expect(appContainers(a)).toEqual({ [`${a.name}-blue`]: 'running' })
}, 120_000)

test('a rollback while a deploy holds the lock waits, then runs', async () => {
  const a = await v1ThenV2('rblock')
  const dir = stateDir(a)
  mkdirSync(dir, { recursive: true })
  const holder = spawn('flock', [`${dir}/lock`, 'sleep', '3'])
  await sleep(300)
  const { run } = await rollback(a, 'previous')
  holder.kill()
  expectOk(run)
  expect(run.log).toMatch(/holds the lock/)
  expect(run.ms).toBeGreaterThan(2500)
  expect((await httpGet(a.url)).body).toBe('v1.0.0\n')
}, 120_000)
