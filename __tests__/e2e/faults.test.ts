// Issue 6, fault matrix (the part done so far): each fault against the real services, under load
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
  type TestApp
} from './helpers.js'

const fixture = appFixture()
const servicesUp = () =>
  execFileSync('bash', [path.join(ROOT, 'scripts/services.sh'), 'up'], { stdio: 'ignore' })
const lastHistory = (a: TestApp) =>
  readFileSync(`/var/lib/bg-deploy/${a.name}/history`, 'utf8')
    .trim()
    .split('\n')
    .at(-1)!
    .split('\t')

async function servingV1(prefix: string): Promise<TestApp> {
  const a = fixture.newApp(prefix, { version: 'v1.0.0' })
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

test('registry unreachable: a deploy fails at the push and a rollback at the pull, v2 keeps serving with 0 failed requests', async () => {
  const svc = fixture.services()
  const a = await servingV1('noreg')
  commitVersion(a, { version: 'v2.0.0' })
  expectOk(await deployApp(a))
  settled(a)
  // the rollback must pull: no kept container, no local image
  docker('rm', '-f', `${a.name}-blue`)
  docker('rmi', `${a.inputs.image}:v1.0.0`)
  const load = await new Load().start(a.url)
  stopPidfile(path.join(svc.dir, 'registry.pid'))

  commitVersion(a, { version: 'v3.0.0' })
  const push = await deployApp(a)
  expect(push.code).toBe(1)
  expect(push.log).toMatch(/docker push.*failed/s)
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
  const dir = `/var/lib/bg-deploy/${a.name}`
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
  for (let i = 0; i < 400 && !log.includes(': switch to '); i++) await sleep(25)
  expect(log).toContain(': switch to ')
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
  for (let i = 0; i < 400 && !appContainers(a)[`${a.name}-green`]; i++) await sleep(25)
  expect(appContainers(a)[`${a.name}-green`]).toBeDefined()
  process.kill(pid, 'SIGKILL')
  const left = await convergesAfter(a, running, load)
  expect(left).toBe('v1.0.0\n')
}, 180_000)
