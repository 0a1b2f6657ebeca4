// A deploy end to end: SSH + the blue-green script against real sshd, dockerd, registry and nginx,
// with a load generator running during deploys.
import { EVENTS } from '../../src/remote/protocol.js'
import path from 'node:path'
import { execFileSync } from 'node:child_process'
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import {
  Load,
  firstServed,
  settled,
  makeWorkspace,
  registryTags,
  appContainers,
  commitVersion,
  deployApp,
  expectOk,
  httpGet,
  appFixture,
  visibleLog,
  type Services,
  type TestApp,
  stateDir,
  historyRows,
  timelineOf,
  waitFor
} from './helpers.js'

const fixture = appFixture()
let svc: Services
beforeAll(() => {
  svc = fixture.services()
})
function app(prefix: string, version = 'v1.0.0', extra: Record<string, string> = {}): TestApp {
  return fixture.newApp(prefix, { version }, extra)
}

test('first deploy on a bare server, then v1 → v2 under load with 0 failed requests', async () => {
  const a = app('zd')
  const first = await deployApp(a)
  expectOk(first)
  expect(first.outputs).toMatchObject({
    deployed: 'true',
    color: 'blue',
    'previous-color': '',
    version: 'v1.0.0'
  })
  expect((await httpGet(a.url)).body).toBe('v1.0.0\n')

  commitVersion(a, { version: 'v2.0.0', startDelay: 2 })
  const load = await new Load().start(a.url)
  const t0 = Date.now()
  const run = await deployApp(a)
  const stats = await load.stop()
  expectOk(run)
  const v2 = stats.versions['v2.0.0']
  console.log(
    `v1 -> v2 under load: ${stats.requests} requests, ${stats.ok} ok, ${stats.non2xx} non-2xx, ${stats.errors} errors, ` +
      `${stats.races} keep-alive races retried, ${stats.slowCompleted}/${stats.slowStarted} slow requests completed; ` +
      `v2 served ${v2 ? v2.first + load.startedAt - t0 : NaN} ms after the action started (app start-up 2 s); total run ${run.ms} ms`
  )
  expect(run.outputs).toMatchObject({
    deployed: 'true',
    color: 'green',
    'previous-color': 'blue',
    version: 'v2.0.0'
  })
  expect(stats.non2xx).toBe(0)
  expect(stats.errors).toBe(0)
  expect(stats.slowFailed).toBe(0)
  expect(stats.slowCompleted).toBeGreaterThan(0)
  expect(stats.versions['v2.0.0']!.count).toBeGreaterThan(0)
  expect((await httpGet(a.url)).body).toBe('v2.0.0\n')
  // the old color is stopped after the run, in the background, holding the app's lock
  settled(a)
  expect(appContainers(a)).toEqual({ [`${a.name}-green`]: 'running', [`${a.name}-blue`]: 'exited' })
  // the timeline output: every step of a deploy without a watch window or a pre-switch task, in
  // order, within the run;
  // v2 first served after the switch
  // with the runner's build and push, which the script's start overlaps: it pulls once pushed
  const timeline = JSON.parse(run.outputs.timeline!) as { step: string; ms: number }[]
  const server = timeline.filter((e) => (EVENTS as string[]).includes(e.step))
  expect(server.map((e) => e.step)).toEqual(
    EVENTS.filter((e) => !['canary', 'watched', 'reverted', 'task', 'tasked'].includes(e))
  )
  const ms = timeline.map((e) => e.ms)
  expect(ms).toEqual([...ms].sort((x, y) => x - y))
  expect(ms[0]).toBeGreaterThanOrEqual(t0)
  expect(ms.at(-1)).toBeLessThanOrEqual(t0 + run.ms)
  const at = timelineOf(run.outputs)
  expect(at.begin).toBeLessThan(at.pushed!)
  expect([at.build! < at.pushed!, at.pushed! <= at.pull!]).toEqual([true, true])
  // the switch's stamp follows the reload by a few ms (the command returns, then `date` runs),
  // and nginx's new workers may answer in between: one bucket and 10 ms of slack
  expect(firstServed(stats, 'v2.0.0', t0)).toBeGreaterThanOrEqual(
    at.switched! - stats.bucketMs - 10
  )
}, 180_000)

/** An app already serving v1 (blue), with the workspace then committed at `next`. */
async function serving(
  prefix: string,
  next: Parameters<typeof commitVersion>[1],
  extra: Record<string, string> = {}
) {
  const a = app(prefix, 'v1.0.0', extra)
  expectOk(await deployApp(a))
  commitVersion(a, next)
  return a
}

test('re-running the same deploy succeeds (known-hosts pin instead of a fingerprint)', async () => {
  const a = await serving('rerun', { version: 'v2.0.0' })
  const { 'host-fingerprint': _, ...inputs } = a.inputs
  a.inputs = { ...inputs, 'known-hosts': `[${svc.sshHost}]:${svc.sshPort} ${svc.hostKeyEd25519}` }
  const first = await deployApp(a)
  expectOk(first)
  const again = await deployApp(a)
  expectOk(again)
  expect([first.outputs.color, again.outputs.color]).toEqual(['green', 'blue'])
  expect(again.outputs.version).toBe('v2.0.0')
  expect((await httpGet(a.url)).body).toBe('v2.0.0\n')
  expect(again.summary).toMatch(/<h3>Timeline<\/h3>/)
  expect(historyRows(a).map((h) => [h[3], h[4], h[7]])).toEqual([
    ['deploy', 'v1.0.0', 'ok'],
    ['deploy', 'v2.0.0', 'ok'],
    ['deploy', 'v2.0.0', 'ok']
  ])
  expect(historyRows(a)[2]![1]).toBe('octocat')
  expect(historyRows(a)[2]![2]).toBe('https://github.com/acme/shop/actions/runs/4242')
}, 180_000)

test('a never-healthy image fails, v1 keeps serving under load, no container is left behind; the wait and the failure are in view', async () => {
  const a = await serving(
    'sick',
    { version: 'v2.0.0', neverHealthy: true },
    { 'health-path': '/health', 'health-timeout': '6' }
  )
  const load = await new Load().start(a.url)
  const run = await deployApp(a)
  const stats = await load.stop()
  expect(run.code).toBe(1)
  expect(run.log).toMatch(
    /did not answer 2xx on \/health within 6s.*previous version is still serving/
  )
  // a heartbeat while health is polled, the failure annotated with its step, and the summary
  // saying where it failed and what serves
  expect(run.log).toContain(`still waiting for ${a.name}-green: 5s of 6s, last: HTTP 404`)
  expect(run.log).toMatch(
    new RegExp(
      `^::error title=bg-deploy failed%3A 127\\.0\\.0\\.1%3A health ${a.name}-green::`,
      'm'
    )
  )
  expect(run.summary).toContain(`<td>Failed during</td><td>127.0.0.1: health ${a.name}-green</td>`)
  expect(run.summary).toContain(
    '<td>Serving now</td><td>v1.0.0 (blue), as the server&#39;s state says</td>'
  )
  expect(run.log).toMatch(/last log lines of/)
  expect(run.outputs.deployed).toBe('false')
  expect(stats).toMatchObject({ non2xx: 0, errors: 0, slowFailed: 0 })
  expect(Object.keys(stats.versions)).toEqual(['v1.0.0'])
  expect(appContainers(a)).toEqual({ [`${a.name}-blue`]: 'running' })
  expect(historyRows(a).at(-1)![7]).toBe('failed-health')
}, 180_000)

test('a crashing image fails within seconds, not at the health timeout', async () => {
  const a = await serving('crash', { version: 'v2.0.0', crash: true }, { 'health-timeout': '60' })
  const started = Date.now()
  const run = await deployApp(a)
  expect(run.code).toBe(1)
  expect(Date.now() - started).toBeLessThan(20_000)
  expect(run.log).toMatch(/exited or restarted before it became healthy/)
  expect(run.log).toMatch(/boom: cannot start/)
  expect((await httpGet(a.url)).body).toBe('v1.0.0\n')
  expect(appContainers(a)).toEqual({ [`${a.name}-blue`]: 'running' })
}, 120_000)

test('nginx -t failing restores the upstream file; v1 keeps serving', async () => {
  const a = await serving('ngt', { version: 'v2.0.0' })
  const upstream = readFileSync(a.inputs['nginx-upstream-file']!, 'utf8')
  // a second upstream block with the same name makes the real `nginx -t` fail
  const clash = `${svc.nginxConfd}/${a.name}-clash.conf.off`
  writeFileSync(clash, `upstream ${a.name} { server 127.0.0.1:9; }\n`)
  const run = await deployApp(a, {
    inputs: {
      'nginx-test-command': `cat ${clash} > ${clash.replace(/\.off$/, '')} && nginx -t -q -c ${svc.nginxConf}; rc=$?; rm -f ${clash.replace(/\.off$/, '')}; exit $rc`
    }
  })
  expect(run.code).toBe(1)
  expect(run.log).toMatch(/nginx rejected the new upstream.*duplicate upstream/s)
  expect(readFileSync(a.inputs['nginx-upstream-file']!, 'utf8')).toBe(upstream)
  expect((await httpGet(a.url)).body).toBe('v1.0.0\n')
  expect(appContainers(a)).toEqual({ [`${a.name}-blue`]: 'running' })
  rmSync(clash)
}, 120_000)

test('two deploys started together: one waits for the lock, the end state is consistent', async () => {
  const a = await serving('lock', { version: 'v2.0.0', startDelay: 1 })
  const other = { ...a, ws: makeWorkspace({ version: 'v3.0.0', startDelay: 1 }, 'release v3.0.0') }
  const [r2, r3] = await Promise.all([deployApp(a), deployApp(other)])
  rmSync(other.ws, { recursive: true, force: true })
  expectOk(r2)
  expectOk(r3)
  expect(`${r2.log}\n${r3.log}`).toMatch(
    /holds the lock \(https:\/\/github.com\/acme\/shop\/actions\/runs\/4242 since /
  )
  const colors = [r2.outputs.color, r3.outputs.color].sort()
  expect(colors).toEqual(['blue', 'green'])
  const last = r2.ms > r3.ms ? r2 : r3
  const nowServing = (await httpGet(a.url)).body.trim()
  expect(nowServing).toBe(last.outputs.version)
  const state = readFileSync(path.join(stateDir(a), 'state'), 'utf8')
  expect(state).toContain(`color=${last.outputs.color}`)
  settled(a)
  expect(Object.values(appContainers(a)).filter((s) => s === 'running')).toHaveLength(1)
}, 180_000)

test('the SSH connection killed mid-deploy leaves v1 serving, and a re-run converges', async () => {
  const a = await serving('cut', { version: 'v2.0.0', startDelay: 4 })
  const load = await new Load().start(a.url)
  const running = deployApp(a)
  // wait until the new container exists (the script is polling its health), then cut the session
  await waitFor(`container ${a.name}-green`, () => !!appContainers(a)[`${a.name}-green`])
  const sessions = execFileSync('pgrep', ['-P', readFileSync(`${svc.dir}/sshd.pid`, 'utf8').trim()])
    .toString()
    .trim()
    .split('\n')
  for (const pid of sessions) process.kill(Number(pid), 'SIGKILL')
  const cut = await running
  expect(cut.code).toBe(1)
  expect(cut.log).toMatch(/SSH session ended before the deploy finished|connection/i)
  expect((await httpGet(a.url)).body).toBe('v1.0.0\n')

  const rerun = await deployApp(a)
  const stats = await load.stop()
  expectOk(rerun)
  expect((await httpGet(a.url)).body).toBe('v2.0.0\n')
  expect(stats).toMatchObject({ non2xx: 0, errors: 0, slowFailed: 0 })
  settled(a)
  expect(Object.values(appContainers(a)).filter((s) => s === 'running')).toHaveLength(1)
}, 180_000)

test('each pinned key type is negotiated: an RSA pin works though the client prefers ed25519', async () => {
  const a = app('rsa')
  const run = await deployApp(a, { inputs: { 'host-fingerprint': svc.fingerprintRsa } })
  expectOk(run)
  expect((await httpGet(a.url)).body).toBe('v1.0.0\n')
}, 60_000)

test('a wrong fingerprint is refused before anything is built or run on the server', async () => {
  const a = app('fp')
  const wrong = `256 SHA256:${'x'.repeat(43)} someone-else (ED25519)`
  const run = await deployApp(a, { inputs: { 'host-fingerprint': wrong } })
  expect(run.code).toBe(1)
  expect(run.log).toMatch(
    /Host key verification failed for 127\.0\.0\.1:\d+: the server presented SHA256:\S+ \(ssh-ed25519\), which matches none of the pinned keys \(host-fingerprint line 1\)/
  )
  expect(existsSync(stateDir(a))).toBe(false)
  expect(await registryTags(svc.registry, a.repo)).toEqual([])
  expect(appContainers(a)).toEqual({})
}, 60_000)

test('env values reach the container byte for byte, and never a command line or the log', async () => {
  const tricky = `it's "quoted" $(touch /tmp/bgd-canary) \`id\` ; && | > ü ${'x'.repeat(300)}  `
  const a = app('env', 'v1.0.0', { env: `TRICKY=${tricky}\nPLAIN=hello world` })
  const run = await deployApp(a)
  expectOk(run)
  const got = await httpGet(`http://127.0.0.1:${a.lbPort}/cgi-bin/env?TRICKY`)
  expect(got.body).toBe(`${tricky}\n`)
  expect((await httpGet(`http://127.0.0.1:${a.lbPort}/cgi-bin/env?PLAIN`)).body).toBe(
    'hello world\n'
  )
  expect(existsSync('/tmp/bgd-canary')).toBe(false)
  expect(visibleLog(run)).not.toContain(tricky)
  // no env file is left on the server
  expect(execFileSync('ls', ['-A', stateDir(a)]).toString()).not.toMatch(/\.env/)
}, 60_000)
