// The app as its compose file describes it, end to end under load on one server: the web service's
// env_file, environment, command, named volume and healthcheck, a worker of the same image with its
// own command; a new version swaps the worker and keeps the volume's data; a rollback puts back
// what ran; a key bg-deploy does not carry over is refused before anything is built.
import { mkdirSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import {
  Load,
  appContainers,
  appFixture,
  commitVersion,
  deployApp,
  docker,
  expectOk,
  httpGet,
  makeWorkspace,
  rollbackApp,
  settled,
  timelineOf,
  type TestApp
} from './helpers.js'

const fixture = appFixture()

const COMPOSE = `
services:
  web:
    build: .
    ports: ["8000:8080"]
    environment:
      GREETING: \${GREETING:-hello from compose}
      PRICE: "$$5"
    env_file: deploy/app.env
    command: ["/bin/sh", "-c", "echo from-compose-command > /www/cmd.txt; exec /start.sh"]
    volumes: [data:/data]
    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/health"]
      interval: 500ms
      timeout: 2s
      retries: 3
    stop_grace_period: 5s
  ticker:
    build: .
    command: ["/bin/sh", "-c", "while true; do echo \\"$$(date +%s) $$GREETING\\" >> /data/ticks; sleep 1; done"]
    volumes: [data:/data]
    env_file: deploy/app.env
    environment:
      GREETING: \${GREETING:-hello from compose}
      PRICE: "$$5"
    stop_grace_period: 2s
  cache:
    image: CACHE_IMAGE
    volumes: [cachedata:/data]
    environment:
      CACHE_TOKEN: \${CACHE_TOKEN:-t0ken}
volumes:
  data: {}
  cachedata: {}
`

const get = async (a: TestApp, p: string) => (await httpGet(`${a.url}${p}`)).body.trim()

describe('compose-file: the app as its docker-compose.yml describes it, one server', () => {
  let a: TestApp
  let cacheImage = ''
  const cache = () =>
    docker('inspect', '-f', '{{.Id}} {{.State.Running}}', `${a.name}-cache`).trim()
  // what the web gets from the accessory, by its service name on the shared network
  const fromWeb = (color: string) =>
    docker('exec', `${a.name}-${color}`, 'wget', '-q', '-O', '-', 'http://cache:8080/').trim()
  const volume = () => `${a.name}_data`
  const ticks = () =>
    docker(
      'run',
      '--rm',
      '-v',
      `${volume()}:/data`,
      '--entrypoint',
      '/bin/cat',
      image(),
      '/data/ticks'
    )
      .trim()
      .split('\n')
  const image = () => `${a.inputs.image}:v1.0.0`
  beforeAll(() => {
    a = fixture.newApp(
      'compose',
      { version: 'v1.0.0' },
      { 'compose-file': 'docker-compose.yml', 'health-path': '/health', 'docker-run-args': '' }
    )
    // the accessory's image: another app (a stand-in for a cache), in the test registry
    const cacheWs = makeWorkspace({ version: 'cache-1' }, 'cache')
    cacheImage = `${a.inputs.image}-cache:1`
    docker('build', '-q', '-t', cacheImage, cacheWs)
    docker('push', '-q', cacheImage)
    writeFileSync(path.join(a.ws, 'docker-compose.yml'), COMPOSE.replace('CACHE_IMAGE', cacheImage))
    docker('volume', 'rm', '-f', `${a.name}_data`)
  }, 120_000)

  test('v1 then v2 under load: the web runs its compose spec, waits for its Docker health check, the worker swaps, the volume keeps its data; 0 failed', async () => {
    mkdirSync(path.join(a.ws, 'deploy'), { recursive: true })
    writeFileSync(path.join(a.ws, 'deploy/app.env'), 'SECRET_KEY=from-env-file\n')
    const first = await deployApp(a)
    expectOk(first)
    expect(first.log).toMatch(/waiting for Docker's health check of \S+-blue/)
    expect(first.log).toMatch(
      /accessory cache: \S+-cache is missing: starting it from compose-file/
    )
    expect(fromWeb('blue')).toBe('cache-1')
    const cacheBefore = cache()
    expect(cacheBefore).toMatch(/ true$/)
    expect(docker('exec', `${a.name}-cache`, 'sh', '-c', 'echo $CACHE_TOKEN').trim()).toBe('t0ken')
    expect(await get(a, 'cgi-bin/env?SECRET_KEY')).toBe('from-env-file')
    expect(await get(a, 'cgi-bin/env?GREETING')).toBe('hello from compose')
    expect(await get(a, 'cgi-bin/env?PRICE')).toBe('$5')
    expect(await get(a, 'cmd.txt')).toBe('from-compose-command')
    settled(a)
    expect(appContainers(a)).toMatchObject({
      [`${a.name}-blue`]: 'running',
      [`${a.name}-blue-ticker`]: 'running'
    })
    // the worker writes to the named volume
    await new Promise((r) => setTimeout(r, 2500))
    const before = ticks()
    expect(before.length).toBeGreaterThan(0)
    expect(before[0]).toMatch(/^\d+ hello from compose$/)

    commitVersion(a, { version: 'v2.0.0' })
    const load = await new Load().start(a.url)
    // \${GREETING:-...} from the runner's environment, as a workflow's env: gives it
    const run = await deployApp(a, { env: { GREETING: 'hello from the runner' } })
    const stats = await load.stop()
    const t = timelineOf(run.outputs)
    console.log(
      `compose, v1 -> v2: ${stats.requests} requests, ${stats.non2xx} non-2xx, ${stats.errors} errors; healthy ${((t.healthy ?? NaN) - (t.started ?? NaN)) / 1000} s after start; run ${run.ms} ms`
    )
    expectOk(run)
    expect(stats.non2xx + stats.errors + stats.slowFailed).toBe(0)
    expect(await get(a, '')).toBe('v2.0.0')
    expect(await get(a, 'cgi-bin/env?GREETING')).toBe('hello from the runner')
    expect(await get(a, 'cmd.txt')).toBe('from-compose-command')
    settled(a)
    expect(appContainers(a)).toMatchObject({
      [`${a.name}-green`]: 'running',
      [`${a.name}-green-ticker`]: 'running'
    })
    expect(appContainers(a)[`${a.name}-blue-ticker`]).not.toBe('running')
    // the accessory: the same container, untouched, and the new color reaches it by name
    expect(run.log).toMatch(/accessory cache: \S+-cache runs; left as it is/)
    expect(cache()).toBe(cacheBefore)
    expect(fromWeb('green')).toBe('cache-1')
    // the data the old worker wrote is still there, and the new worker adds to it
    await new Promise((r) => setTimeout(r, 2000))
    const after = ticks()
    expect(after.slice(0, before.length)).toEqual(before)
    expect(after.length).toBeGreaterThan(before.length)
  }, 240_000)

  test('rollback under load with only rollback: previous: v1 serves again with its compose command and env; 0 failed', async () => {
    const load = await new Load().start(a.url)
    const run = await rollbackApp(a)
    const stats = await load.stop()
    console.log(
      `compose, rollback to v1: ${stats.requests} requests, ${stats.non2xx + stats.errors} failed; run ${run.ms} ms`
    )
    expectOk(run)
    expect(stats.non2xx + stats.errors + stats.slowFailed).toBe(0)
    expect(await get(a, '')).toBe('v1.0.0')
    expect(await get(a, 'cgi-bin/env?SECRET_KEY')).toBe('from-env-file')
    // v1's env as it ran, not this run's interpolation
    expect(await get(a, 'cgi-bin/env?GREETING')).toBe('hello from compose')
    expect(await get(a, 'cmd.txt')).toBe('from-compose-command')
    settled(a)
    expect(ticks().length).toBeGreaterThan(3)
    expect(fromWeb('blue')).toBe('cache-1')
  }, 240_000)

  test('a key bg-deploy does not carry over is refused by name before anything is built; nothing changes', async () => {
    writeFileSync(
      path.join(a.ws, 'bad-compose.yml'),
      COMPOSE.replace('CACHE_IMAGE', cacheImage).replace(
        '    build: .\n',
        '    build: .\n    container_name: shop\n    privileged: true\n'
      )
    )
    const before = appContainers(a)
    const run = await deployApp(a, { inputs: { 'compose-file': 'bad-compose.yml' } })
    expect(run.code).not.toBe(0)
    expect(run.log).toMatch(/services\.web\.container_name is not carried over by bg-deploy/)
    expect(run.log).toMatch(/services\.web\.privileged is not carried over by bg-deploy/)
    expect(timelineOf(run.outputs).build).toBeUndefined()
    expect(run.log).not.toMatch(/docker build|Successfully built/)
    expect(appContainers(a)).toEqual(before)
    expect(await get(a, '')).toBe('v1.0.0')
  }, 120_000)
})
