// switch-mode dnat end to end: switch-mode dnat (no nginx reload per switch) against the real kernel NAT
// table, sshd, dockerd and nginx, under keep-alive load; reload mode measured beside it.
import { execFileSync, spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import {
  Load,
  ROOT,
  appFixture,
  commitVersion,
  deployApp,
  expectOk,
  httpGet,
  settled,
  sleep,
  timelineOf,
  type LoadStats,
  type TestApp,
  rollbackApp
} from './helpers.js'

const fixture = appFixture()

/** An app in `mode` (live port = its block's 4th port), already serving v1.0.0. */
async function servingApp(prefix: string, mode: 'dnat' | 'reload'): Promise<TestApp> {
  const a = fixture.newApp(prefix, { version: 'v1.0.0' })
  a.inputs['switch-mode'] = mode
  a.inputs['live-port'] = String(a.lbPort + 3)
  expectOk(await deployApp(a))
  settled(a)
  expect((await httpGet(a.url)).body).toBe('v1.0.0\n')
  return a
}

const chain = (a: TestApp) => `BGD-${a.name}`
const natRules = () => execFileSync('iptables', ['-w', '-t', 'nat', '-S']).toString()

async function rollback(a: TestApp, extra: Record<string, string> = {}) {
  const run = await rollbackApp(a, 'previous', extra)
  expectOk(run)
  settled(a)
  return run
}

/** Each run's server steps (epoch ms), to place a failed request among them. */
type Steps = { run: string; steps: Record<string, number> }[]

/** 5 deploys of new versions, each followed by a rollback: 10 switches. */
async function tenSwitches(a: TestApp, steps: Steps = []): Promise<void> {
  for (let i = 1; i <= 5; i++) {
    commitVersion(a, { version: `v1.${i}.0` })
    const run = await deployApp(a)
    expectOk(run)
    const stopped = Date.now()
    settled(a)
    steps.push({
      run: `deploy v1.${i}.0`,
      steps: { ...timelineOf(run.outputs), settled: Date.now(), stopped }
    })
    expect((await httpGet(a.url)).body).toBe(`v1.${i}.0\n`)
    const back = await rollback(a)
    steps.push({ run: 'rollback', steps: { ...timelineOf(back.outputs), settled: Date.now() } })
    expect((await httpGet(a.url)).body).toBe('v1.0.0\n')
  }
}

/** The steps around each failed request, in ms since the load started, for the failure message. */
function placeFailures(stats: LoadStats, steps: Steps): string {
  return stats.failures
    .map((f) => {
      const at = stats.t0 + (f as { t: number }).t
      const near = steps
        .flatMap((r) => Object.entries(r.steps).map(([k, ms]) => `${r.run}:${k}@${ms - at}`))
        .filter((x) => Math.abs(Number(x.split('@')[1])) < 3000)
      return `failure at ${(f as { t: number }).t} ms: ${JSON.stringify(f).slice(0, 80)}; steps (ms from it): ${near.join(' ')}`
    })
    .join('\n')
}

const summary = (s: LoadStats) =>
  `${s.requests} requests, ${s.non2xx} non-2xx, ${s.errors} connection errors (keep-alive ${s.errorsByKind.keepalive}, new-connection ${s.errorsByKind.fresh}, slow ${s.errorsByKind.slow}), ${s.races} keep-alive races retried, ${s.slowCompleted}/${s.slowStarted} slow requests completed`

test('10 deploys and rollbacks in dnat mode: 0 failed requests and 0 races; reload mode measured beside it', async () => {
  const dnat = await servingApp('dn', 'dnat')
  // nginx points at the live port; the NAT rule picks the color
  expect(readFileSync(dnat.inputs['nginx-upstream-file']!, 'utf8')).toContain(
    `server 127.0.0.1:${dnat.lbPort + 3};`
  )
  expect(natRules()).toContain(
    `-A ${chain(dnat)} -d 127.0.0.1/32 -p tcp -m tcp --dport ${dnat.lbPort + 3} -j DNAT --to-destination 127.0.0.1:${dnat.lbPort + 1}`
  )
  const nginxPid = readFileSync(`${fixture.services().dir}/nginx/nginx.pid`, 'utf8').trim()
  const workers = () =>
    execFileSync('pgrep', ['-P', nginxPid]).toString().trim().split('\n').sort().join(',')
  const workersBefore = workers()

  let load = await new Load().start(dnat.url)
  const steps: Steps = []
  await tenSwitches(dnat, steps)
  const d = await load.stop()
  if (d.failures.length > 0) console.log(placeFailures(d, steps))
  // not one reload: nginx still runs the workers it had
  expect(workers()).toBe(workersBefore)

  const reload = await servingApp('rl', 'reload')
  load = await new Load().start(reload.url)
  await tenSwitches(reload)
  const r = await load.stop()

  console.log(`same load, 10 switches each:\n  dnat:   ${summary(d)}\n  reload: ${summary(r)}`)
  expect(d).toMatchObject({ non2xx: 0, errors: 0, slowFailed: 0, failures: [] })
  // no reload, so no keep-alive race of nginx's own: 0 in most runs with the conntrack cleanup,
  // 1 (retried and served) in one full-suite run, against 24-49 in reload mode beside it
  expect(d.races).toBeLessThanOrEqual(2)
  expect(d.races).toBeLessThan(r.races)
  expect(d.slowCompleted).toBeGreaterThan(0)
  // reload mode: nothing but keep-alive resets, nginx's own floor
  expect(r).toMatchObject({ non2xx: 0, slowFailed: 0 })
  expect(r.errorsByKind).toMatchObject({ fresh: 0, slow: 0 })
}, 400_000)

test('the rule comes back from the state file after the NAT table lost it (the boot path)', async () => {
  const a = await servingApp('boot', 'dnat')
  const restore = '/var/lib/bg-deploy/restore-dnat.sh'
  expect(existsSync(restore)).toBe(true)
  // what a reboot leaves: no jump, no chain
  const jump = `OUTPUT -d 127.0.0.1/32 -p tcp -m tcp --dport ${a.lbPort + 3} -j ${chain(a)}`
  execFileSync('iptables', ['-w', '-t', 'nat', '-D', ...jump.split(' ')])
  execFileSync('iptables', ['-w', '-t', 'nat', '-F', chain(a)])
  execFileSync('iptables', ['-w', '-t', 'nat', '-X', chain(a)])
  expect((await httpGet(a.url)).status).toBe(502)

  const out = execFileSync('bash', [restore]).toString()
  expect(out).toContain(
    `restored ${chain(a)}: 127.0.0.1:${a.lbPort + 3} -> 127.0.0.1:${a.lbPort + 1}`
  )
  expect((await httpGet(a.url)).body).toBe('v1.0.0\n')
  // running it again changes nothing: one jump, one rule
  execFileSync('bash', [restore])
  const rules = natRules()
    .split('\n')
    .filter((l) => l.includes(chain(a)))
  expect(rules).toHaveLength(3) // -N, the DNAT rule, the jump
}, 120_000)

test('the rule and the app survive a restart of the Docker daemon', async () => {
  const a = await servingApp('dockerd', 'dnat')
  commitVersion(a, { version: 'v2.0.0' })
  expectOk(await deployApp(a))
  settled(a)
  const before = natRules()
    .split('\n')
    .filter((l) => l.includes(chain(a)))
  const load = await new Load().start(a.url)
  execFileSync('bash', [path.join(ROOT, 'scripts/services.sh'), 'restart-docker'], {
    stdio: 'ignore'
  })
  // with live-restore the containers keep running; the rule was never touched. The rule points at
  // the published port, served by Docker's port proxy, which is down while the daemon restarts:
  // the README quotes this count.
  await sleep(1000)
  const stats = await load.stop()
  console.log(
    `dnat mode, Docker daemon restart under load: ${stats.requests} requests, ${stats.non2xx} non-2xx, ${stats.errors} errors`
  )
  let body = ''
  for (let i = 0; i < 150 && body !== 'v2.0.0\n'; i++) {
    body = await httpGet(a.url, 1000).then(
      (r) => r.body,
      () => ''
    )
    if (body !== 'v2.0.0\n') await sleep(200)
  }
  expect(body).toBe('v2.0.0\n')
  expect(
    natRules()
      .split('\n')
      .filter((l) => l.includes(chain(a)))
  ).toEqual(before)
  // and the next switch still works
  await rollback(a)
  expect((await httpGet(a.url)).body).toBe('v1.0.0\n')
}, 180_000)

test('switching an app between modes, both ways, under load: no failed request', async () => {
  const a = await servingApp('modes', 'reload')
  const load = await new Load().start(a.url)
  commitVersion(a, { version: 'v2.0.0' })
  a.inputs['switch-mode'] = 'dnat'
  const toDnat = await deployApp(a)
  expectOk(toDnat)
  expect(toDnat.log).toMatch(/first switch in dnat mode/)
  settled(a)
  expect(natRules()).toContain(`-N ${chain(a)}`)

  commitVersion(a, { version: 'v3.0.0' })
  a.inputs['switch-mode'] = 'reload'
  const toReload = await deployApp(a)
  expectOk(toReload)
  expect(toReload.log).toMatch(/left switch-mode dnat: removed the NAT rule/)
  settled(a)
  const stats = await load.stop()
  expect(natRules()).not.toContain(chain(a))
  expect(readFileSync(a.inputs['nginx-upstream-file']!, 'utf8')).toContain(
    `server 127.0.0.1:${a.lbPort + 1};`
  )
  expect((await httpGet(a.url)).body).toBe('v3.0.0\n')
  console.log(`reload -> dnat -> reload under load: ${summary(stats)}`)
  expect(stats).toMatchObject({ non2xx: 0, slowFailed: 0 })
  expect(stats.errorsByKind).toMatchObject({ fresh: 0, slow: 0 })
}, 180_000)

test('a rollback uses the mode of the deploy it undoes', async () => {
  const a = await servingApp('rbmode', 'dnat')
  commitVersion(a, { version: 'v2.0.0' })
  expectOk(await deployApp(a))
  settled(a)
  const run = await rollback(a, { 'switch-mode': 'reload' })
  expect(run.log).toMatch(/rolling back in switch-mode dnat, the mode of the deploy it undoes/)
  expect(natRules()).toContain(
    `--dport ${a.lbPort + 3} -j DNAT --to-destination 127.0.0.1:${a.lbPort + 1}`
  )
  expect((await httpGet(a.url)).body).toBe('v1.0.0\n')
}, 120_000)

test('an upstream with keepalive is refused in dnat mode before anything changes, with the reason', async () => {
  const a = await servingApp('keepalive', 'dnat')
  const file = a.inputs['nginx-upstream-file']!
  const edited = readFileSync(file, 'utf8').replace(/}\s*$/, '    keepalive 8;\n}\n')
  writeFileSync(file, edited)
  const rulesBefore = natRules()
  commitVersion(a, { version: 'v2.0.0' })
  const run = await deployApp(a)
  expect(run.code).toBe(1)
  expect(run.log).toMatch(
    /switch-mode dnat cannot work with 'keepalive' in the upstream block of .*: nginx would keep pooled connections to the old color\. Remove it .*Nothing was changed\./
  )
  expect(natRules()).toBe(rulesBefore)
  expect(readFileSync(file, 'utf8')).toBe(edited)
  expect((await httpGet(a.url)).body).toBe('v1.0.0\n')
}, 120_000)

test('without root or sudo, dnat mode stops before anything is changed and says what to do', () => {
  const stateDir = mkdtempSync(path.join(tmpdir(), 'bgd-nobody-'))
  execFileSync('chown', ['nobody', stateDir])
  const script = readFileSync(path.join(ROOT, 'dist/deploy.sh'), 'utf8')
  const r = spawnSync(
    'runuser',
    [
      '-u',
      'nobody',
      '--',
      'bash',
      '-s',
      '--',
      'app=nobody-app',
      'image=127.0.0.1:5000/none/app:v1',
      `state_dir=${stateDir}/app`,
      'switch_mode=dnat',
      'live_port=18999'
    ],
    { input: `${script}\nend\n`, encoding: 'utf8', env: { PATH: process.env.PATH } }
  )
  rmSync(stateDir, { recursive: true, force: true })
  expect(r.status).toBe(1)
  expect(r.stdout).toMatch(
    /::bg-deploy-error:: switch-mode dnat needs root on the server, or passwordless sudo for iptables and iptables-restore \(user nobody has neither\)\. Nothing was changed\./
  )
  expect(natRules()).not.toContain('BGD-nobody-app')
})
