// The fault matrix: each fault against the real services, under load
// where a version can serve; the old version keeps serving, the message says what happened and
// what to do, the history records it where it can, and the next run converges.
import { execFileSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import path from 'node:path'
import {
  Load,
  ROOT,
  appContainers,
  appFixture,
  commitVersion,
  deployApp,
  docker,
  expectOk,
  httpGet,
  settled,
  sleep,
  type TestApp,
  stateDir,
  lastHistory,
  waitFor
} from './helpers.js'

const fixture = appFixture()
const servicesUp = () =>
  execFileSync('bash', [path.join(ROOT, 'scripts/services.sh'), 'up'], { stdio: 'ignore' })

async function servingV1(prefix: string): Promise<TestApp> {
  const a = fixture.newApp(prefix, { version: 'v1.0.0' })
  expectOk(await deployApp(a))
  settled(a)
  return a
}

/** v1 deployed, then v2: v2 serves and v1's container is kept, stopped. */
async function servingV2(prefix: string): Promise<TestApp> {
  const a = await servingV1(prefix)
  commitVersion(a, { version: 'v2.0.0' })
  expectOk(await deployApp(a))
  settled(a)
  return a
}

function stopPidfile(file: string): void {
  const pid = Number(readFileSync(file, 'utf8').trim())
  process.kill(pid, 'SIGTERM')
  for (let i = 0; i < 100; i++) {
    try {
      process.kill(pid, 0)
    } catch {
      return
    }
    execFileSync('sleep', ['0.1'])
  }
  throw new Error(`${file}: process ${pid} did not stop`)
}

afterEach(() => servicesUp()) // whatever a test stopped comes back for the next

test('nginx not running when the reload is attempted: fails saying so, nothing switched, the next run converges', async () => {
  const svc = fixture.services()
  const a = await servingV1('nonginx')
  const upstream = a.inputs['nginx-upstream-file']!
  const before = readFileSync(upstream, 'utf8')
  commitVersion(a, { version: 'v2.0.0' })
  stopPidfile(path.join(svc.dir, 'nginx/nginx.pid'))
  const run = await deployApp(a)
  expect(run.code).toBe(1)
  expect(run.log).toMatch(
    /nginx reload failed, so the previous upstream file was restored and the new container removed\. Is nginx running\?/
  )
  expect(readFileSync(upstream, 'utf8')).toBe(before)
  expect(appContainers(a)).toEqual({ [`${a.name}-blue`]: 'running' })
  expect(lastHistory(a)[7]).toBe('failed-nginx-reload')

  servicesUp()
  expect((await httpGet(a.url)).body).toBe('v1.0.0\n')
  const again = await deployApp(a)
  expectOk(again)
  expect((await httpGet(a.url)).body).toBe('v2.0.0\n')
}, 180_000)

test('registry unreachable: a deploy fails before the push (it cannot check the version is new; the build begun meanwhile is stopped) and a rollback at the pull, v2 keeps serving with 0 failed requests', async () => {
  const svc = fixture.services()
  const a = await servingV2('noreg')
  // the rollback must pull: no kept container, no local image
  docker('rm', '-f', `${a.name}-blue`)
  docker('rmi', `${a.inputs.image}:v1.0.0`)
  const load = await new Load().start(a.url)
  stopPidfile(path.join(svc.dir, 'registry.pid'))

  commitVersion(a, { version: 'v3.0.0' })
  const push = await deployApp(a)
  expect(push.code).toBe(1)
  expect(push.log).toMatch(
    /Cannot check whether \S+:v3\.0\.0 is in the registry already \(a version is never pushed over\)/
  )
  expect(push.log).toMatch(/Stopping the build of \S+:v3\.0\.0: the run cannot go on/)
  expect(push.log).not.toMatch(/docker push/)
  expect(push.log).not.toMatch(/127\.0\.0\.1: pull/)

  const rb = await deployApp(a, {
    inputs: { rollback: 'v1.0.0' },
    eventName: 'workflow_dispatch',
    event: { inputs: { rollback: 'v1.0.0' } }
  })
  const stats = await load.stop()
  expect(rb.code).toBe(1)
  expect(rb.log).toMatch(
    /cannot roll back to v1\.0\.0: its image \S+:v1\.0\.0 is neither on the server nor in the registry/
  )
  expect(lastHistory(a)[7]).toBe('failed-pull')
  expect(stats).toMatchObject({ non2xx: 0, errors: 0, slowFailed: 0 })
  expect(Object.keys(stats.versions)).toEqual(['v2.0.0'])

  servicesUp()
  const again = await deployApp(a, {
    inputs: { rollback: 'v1.0.0' },
    eventName: 'workflow_dispatch',
    event: { inputs: { rollback: 'v1.0.0' } }
  })
  expectOk(again)
  expect((await httpGet(a.url)).body).toBe('v1.0.0\n')
}, 240_000)

test('disk full on the state directory: refused before anything changes, with the fix; the next run converges', async () => {
  const a = await servingV1('diskfull')
  const dir = stateDir(a)
  const saved = execFileSync('tar', ['-C', dir, '-cf', '-', '.'])
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256k,mode=700', 'tmpfs', dir])
  try {
    execFileSync('tar', ['-C', dir, '-xf', '-'], { input: saved })
    execFileSync('bash', ['-c', `cat /dev/zero > ${dir}/filler 2>/dev/null || true`])
    commitVersion(a, { version: 'v2.0.0' })
    const load = await new Load().start(a.url)
    const run = await deployApp(a)
    const stats = await load.stop()
    expect(run.code).toBe(1)
    expect(run.log).toMatch(
      /the filesystem of the state directory \S+ has only \d+ KB free; bg-deploy needs 1 MB there .* Free some space and run again\. Nothing was changed\./
    )
    expect(stats).toMatchObject({ non2xx: 0, errors: 0, slowFailed: 0 })
    expect(appContainers(a)).toEqual({ [`${a.name}-blue`]: 'running' })
  } finally {
    execFileSync('umount', ['-l', dir])
  }
  expect(existsSync(`${dir}/filler`)).toBe(false)
  const again = await deployApp(a)
  expectOk(again)
  expect((await httpGet(a.url)).body).toBe('v2.0.0\n')
}, 180_000)

test('the upstream directory not writable: nothing switched, recorded, the next run converges', async () => {
  const svc = fixture.services()
  const a = await servingV1('rodir')
  commitVersion(a, { version: 'v2.0.0' })
  // conf.d read-only, its contents still visible (as a read-only mount or wrong owner would be)
  execFileSync('mount', ['--bind', svc.nginxConfd, svc.nginxConfd])
  execFileSync('mount', ['-o', 'remount,bind,ro', svc.nginxConfd])
  let stats
  try {
    const load = await new Load().start(a.url)
    const run = await deployApp(a)
    stats = await load.stop()
    expect(run.code).toBe(1)
    expect(run.log).toMatch(
      /cannot write the upstream file: \S+ is not a writable directory for user root\. Make it writable, or set nginx-upstream-file .*Nothing was switched; the previous version is still serving\./
    )
  } finally {
    execFileSync('umount', [svc.nginxConfd])
  }
  expect(stats).toMatchObject({ non2xx: 0, errors: 0, slowFailed: 0 })
  expect(lastHistory(a)[7]).toBe('failed-upstream-write')
  expect(appContainers(a)).toEqual({ [`${a.name}-blue`]: 'running' })
  expectOk(await deployApp(a))
  expect((await httpGet(a.url)).body).toBe('v2.0.0\n')
}, 180_000)

/** Kill the sshd processes serving sessions (the connection drops as on a network cut). */
function cutSshSessions(): void {
  const sshd = readFileSync(`${fixture.services().dir}/sshd.pid`, 'utf8').trim()
  const sessions = execFileSync('pgrep', ['-P', sshd]).toString().trim().split('\n')
  for (const pid of sessions) process.kill(Number(pid), 'SIGKILL')
}

/** After a cut run: whichever version it left serving keeps serving; a re-run converges on v2. */
async function convergesAfter(a: TestApp, cut: Promise<{ code: number }>, load: Load) {
  const run = await cut
  expect(run.code).not.toBe(0)
  const left = (await httpGet(a.url)).body
  expect(['v1.0.0\n', 'v2.0.0\n']).toContain(left)
  const again = await deployApp(a)
  expectOk(again)
  settled(a)
  const stats = await load.stop()
  expect((await httpGet(a.url)).body).toBe('v2.0.0\n')
  expect(stats).toMatchObject({ non2xx: 0, errors: 0, slowFailed: 0 })
  expect(Object.values(appContainers(a)).filter((s) => s === 'running')).toHaveLength(1)
  return left
}

test('the SSH connection cut during the switch: the old or the new version serves, 0 failed requests, the re-run converges', async () => {
  const svc = fixture.services()
  const a = await servingV1('cutswitch')
  commitVersion(a, { version: 'v2.0.0' })
  const load = await new Load().start(a.url)
  let log = ''
  // a slow nginx test keeps the run inside the switch long enough to cut it there
  const running = deployApp(a, {
    inputs: { 'nginx-test-command': `sleep 2; nginx -t -q -c ${svc.nginxConf}` },
    onLog: (t) => (log += t)
  })
  await waitFor('the switch phase in the log', () => log.includes(': switch to '))
  await sleep(300)
  cutSshSessions()
  const left = await convergesAfter(a, running, load)
  console.log(`SSH cut during the switch: ${left.trim()} served until the re-run`)
}, 180_000)

test('the runner killed (SIGKILL) mid-deploy, then re-run: 0 failed requests, converges', async () => {
  const a = await servingV1('sigkill')
  commitVersion(a, { version: 'v2.0.0', startDelay: 3 })
  const load = await new Load().start(a.url)
  let pid = 0
  const running = deployApp(a, { onSpawn: (p) => (pid = p) })
  // the script is polling the new container's health when the runner dies
  await waitFor(`container ${a.name}-green`, () => !!appContainers(a)[`${a.name}-green`])
  process.kill(pid, 'SIGKILL')
  const left = await convergesAfter(a, running, load)
  expect(left).toBe('v1.0.0\n')
}, 180_000)

/**
 * Restart the Docker engine the way a package upgrade does. It runs with live-restore here, as the
 * README asks of a server, and with `dockerdArgs` when set.
 */
let dockerdArgs: string | undefined
function restartDocker(): void {
  execFileSync('bash', [path.join(ROOT, 'scripts/services.sh'), 'restart-docker'], {
    stdio: 'ignore',
    env: { ...process.env, ...(dockerdArgs ? { BGD_DOCKERD_ARGS: dockerdArgs } : {}) }
  })
}

/** A deploy with the daemon restarted while the new container's health is polled. */
async function restartWhilePolled(prefix: string) {
  const a = await servingV1(prefix)
  commitVersion(a, { version: 'v2.0.0', startDelay: 3 })
  const load = await new Load().start(a.url)
  let log = ''
  const running = deployApp(a, { onLog: (t) => (log += t) })
  await waitFor('the health phase in the log', () => log.includes(`: health ${a.name}-green`))
  restartDocker()
  const run = await running
  expectOk(run)
  expect(run.log).toMatch(
    /the Docker daemon is not answering \(docker \w+ failed; is it restarting\?\)/
  )
  expect(run.log).toMatch(/the Docker daemon answers again after \d+ ms/)
  settled(a)
  const stats = await load.stop()
  expect((await httpGet(a.url)).body).toBe('v2.0.0\n')
  expect(lastHistory(a)[7]).toBe('ok')
  expect(appContainers(a)).toEqual({
    [`${a.name}-blue`]: 'exited',
    [`${a.name}-green`]: 'running'
  })
  return stats
}

describe('the Docker daemon restarted, with live-restore and "userland-proxy": false (the README\'s server setup)', () => {
  beforeAll(() => {
    dockerdArgs = '--live-restore --userland-proxy=false'
    restartDocker()
  })
  afterAll(() => {
    dockerdArgs = undefined
    restartDocker()
  })

  test('while the new container is polled: the run waits for it and finishes, 0 failed requests', async () => {
    const stats = await restartWhilePolled('dockerd')
    expect(stats).toMatchObject({ failures: [], slowFailed: 0 })
    console.log(
      `Docker daemon restarted during health polling: ${stats.requests} requests, 0 failed`
    )
  }, 180_000)

  test('right after the switch: the old color is still drained and stopped, 0 failed requests', async () => {
    const a = await servingV1('dockerdsw')
    commitVersion(a, { version: 'v2.0.0' })
    const load = await new Load().start(a.url)
    let log = ''
    const running = deployApp(a, { onLog: (t) => (log += t) })
    await waitFor('the switch phase in the log', () => log.includes(`: switch to ${a.name}-green`))
    restartDocker()
    const run = await running
    expectOk(run)
    settled(a)
    expect(run.log).toMatch(/the Docker daemon is not answering .*\n.*answers again after \d+ ms/)
    const stats = await load.stop()
    expect((await httpGet(a.url)).body).toBe('v2.0.0\n')
    expect(stats).toMatchObject({ failures: [], slowFailed: 0 })
    expect(appContainers(a)).toEqual({
      [`${a.name}-blue`]: 'exited',
      [`${a.name}-green`]: 'running'
    })
    // the next deploy (a rollback here) works on the restarted daemon
    expectOk(await deployApp(a, { inputs: { rollback: 'previous' } }))
    expect((await httpGet(a.url)).body).toBe('v1.0.0\n')
  }, 180_000)

  test('down for longer than the run waits: fails saying so, recorded, the app serves all along, the next run converges', async () => {
    const svc = fixture.services()
    const a = await servingV2('dockerdown')
    const load = await new Load().start(a.url)
    stopPidfile(path.join(svc.dir, 'dockerd.pid')) // live-restore: the containers keep running
    let rollback
    try {
      rollback = await deployApp(a, { inputs: { rollback: 'previous' } })
    } finally {
      restartDocker()
    }
    expect(rollback.code).toBe(1)
    expect(rollback.log).toMatch(
      /the Docker daemon on the server did not answer for 60s \(during docker info\)\. Start it \(systemctl start docker\) and run the deploy again/
    )
    const h = lastHistory(a)
    expect([h[3], h[7]]).toEqual(['rollback', 'failed-docker'])
    expect((await httpGet(a.url)).body).toBe('v2.0.0\n')
    expectOk(await deployApp(a, { inputs: { rollback: 'previous' } }))
    settled(a)
    const stats = await load.stop()
    expect((await httpGet(a.url)).body).toBe('v1.0.0\n')
    expect(stats).toMatchObject({ failures: [], slowFailed: 0 })
  }, 240_000)

  test('switch-mode dnat is refused when Docker runs without its userland proxy, before anything is switched', async () => {
    const a = await servingV1('dnatnoproxy')
    commitVersion(a, { version: 'v2.0.0' })
    const run = await deployApp(a, { inputs: { 'switch-mode': 'dnat' } })
    expect(run.code).toBe(1)
    expect(run.log).toMatch(
      /switch-mode dnat needs Docker's userland proxy on the server: no docker-proxy serves 127\.0\.0\.1:\d+, .*"userland-proxy": false\. Use switch-mode reload/
    )
    expect((await httpGet(a.url)).body).toBe('v1.0.0\n')
    expect(appContainers(a)).toEqual({ [`${a.name}-blue`]: 'running' })
    expectOk(await deployApp(a))
    expect((await httpGet(a.url)).body).toBe('v2.0.0\n')
  }, 180_000)
})

test("the Docker daemon restarted while polled, with Docker's default userland proxy: no non-2xx; responses in flight through the proxy as it stops can be cut", async () => {
  const stats = await restartWhilePolled('dockerdproxy')
  expect(stats).toMatchObject({ non2xx: 0, slowFailed: 0 })
  expect(stats.failures.filter((f) => (f as { error?: string }).error !== 'ECONNRESET')).toEqual([])
  console.log(
    `Docker daemon restarted during health polling, default userland proxy: ${stats.requests} requests, ${stats.non2xx} non-2xx, ${stats.errors} connection resets`
  )
}, 180_000)

test('a Docker daemon without live-restore: the run warns, naming the fix, and deploys', async () => {
  const a = await servingV1('nolive')
  commitVersion(a, { version: 'v2.0.0' })
  dockerdArgs = '--live-restore=false'
  let run
  try {
    restartDocker()
    run = await deployApp(a)
  } finally {
    dockerdArgs = undefined
    restartDocker()
  }
  expectOk(run)
  expect(run.log).toMatch(
    /::warning title=Server 127\.0\.0\.1::the Docker daemon on the server runs without live-restore: .*every container stops, the serving one too.* Add "live-restore": true to \/etc\/docker\/daemon\.json and run 'systemctl reload docker'/
  )
  expect((await httpGet(a.url)).body).toBe('v2.0.0\n')
  // with live-restore (the daemon now), no warning
  expect((await deployApp(a, { inputs: { rollback: 'previous' } })).log).not.toContain(
    'without live-restore'
  )
}, 180_000)
