// Several servers in one run, end to end: three app servers and a load-balancer server, each a
// network namespace with its own sshd, Docker engine and nginx (scripts/hosts.sh), under load.
// Shape 1: the load balancer's nginx lists every app server and switches them all at once.
// Shape 2: each server switches its own nginx; all switch or none, also when a session is cut or
// the runner dies during the commit.
import { execFileSync, spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import {
  SERVER_NGINX as NGINX,
  fleetSetup,
  headMessage,
  hostsScript,
  testServers,
  type TestServer
} from '../../scripts/harness/index.mjs'
import {
  Load,
  commitVersion,
  expectOk,
  headSha,
  httpGet,
  lastServed,
  makeWorkspace,
  registryTags,
  runAction,
  services,
  sleep,
  timelineOf,
  type ActionRun,
  type AppBehaviour,
  type LoadStats,
  type RunOptions,
  type Services
} from './helpers.js'

let svc: Services
let apps: TestServer[]
let lb: TestServer
beforeAll(() => {
  svc = services()
  hostsScript('up', 3)
  ;({ apps, lb } = testServers(svc))
}, 120_000)
afterAll(() => {
  // BGD_KEEP_HOSTS=1 leaves them running, to look at after a failure
  if (!process.env.BGD_KEEP_HOSTS) hostsScript('down')
}, 120_000)

let nextPort = 9000

interface FleetApp {
  name: string
  ws: string
  inputs: Record<string, string>
  /** where users reach the app: the load balancer, or each server's nginx */
  urls: string[]
}

/** An app on the test servers: shape 'lb' (behind the load balancer) or 'each' (nginx on each). */
function fleetApp(
  shape: 'lb' | 'each',
  behaviour: AppBehaviour,
  extra: Record<string, string> = {}
): FleetApp {
  const port = (nextPort += 10)
  const name = `${shape}-${port}`
  const setup = fleetSetup(
    svc,
    { apps, lb },
    { app: name, repository: `e2e/${name}-${Date.now().toString(36)}`, port, shape }
  )
  return {
    name,
    ws: makeWorkspace(behaviour, `release ${behaviour.version}`),
    urls: setup.urls,
    inputs: { ...setup.inputs, 'health-interval': '0.2', 'drain-timeout': '10', ...extra }
  }
}

function deploy(
  app: FleetApp,
  opts: Partial<RunOptions> & { inputs?: Record<string, string> } = {}
) {
  const sha = headSha(app.ws)
  return runAction(
    { ...app.inputs, ...opts.inputs },
    {
      workspace: app.ws,
      sha,
      event: { head_commit: { id: sha, message: headMessage(app.ws) } },
      ...opts
    }
  )
}

function rollback(app: FleetApp, target = 'previous') {
  return deploy(app, {
    inputs: { rollback: target },
    eventName: 'workflow_dispatch',
    event: { inputs: { rollback: target } }
  })
}

/** What each front (the load balancer, or each server's nginx) answers on /. */
async function served(app: FleetApp): Promise<string[]> {
  return Promise.all(app.urls.map(async (u) => (await httpGet(u)).body.trim()))
}

/** The version each app server's state file says it serves. */
function stateVersions(app: FleetApp): string[] {
  return apps.map((s) => {
    const f = path.join(s.dir, 'state', app.name, 'state')
    return existsSync(f) ? (/^version=(.*)$/m.exec(readFileSync(f, 'utf8'))?.[1] ?? '') : ''
  })
}

/** The result column of each app server's newest history rows (`n` of them). */
function lastResults(app: FleetApp, n: number): string[][] {
  return apps.map((s) =>
    readFileSync(path.join(s.dir, 'state', app.name, 'history'), 'utf8')
      .trim()
      .split('\n')
      .slice(-n)
      .map((l) => l.split('\t')[7]!)
  )
}

/** The newest history result of each server once every one says `result` (or after 30 s). */
async function settleOn(app: FleetApp, result: string): Promise<string[][]> {
  for (let i = 0; i < 300; i++) {
    const r = lastResults(app, 1)
    if (r.every(([x]) => x === result)) return r
    await sleep(100)
  }
  return lastResults(app, 1)
}

/** Containers of the app on a server: name -> state. */
function containers(s: TestServer, app: FleetApp): Record<string, string> {
  const out = execFileSync('docker', [
    '-H',
    s.docker!,
    'ps',
    '-a',
    '--filter',
    `label=bg-deploy.app=${app.name}`,
    '--format',
    '{{.Names}} {{.State}}'
  ]).toString()
  return Object.fromEntries(
    out
      .trim()
      .split('\n')
      .filter(Boolean)
      .map((l) => l.split(' ') as [string, string])
  )
}

/** Add to server `s`'s site the include of bg-deploy's watch file, by the path nginx itself reads. */
function includeWatchFile(s: TestServer, app: FleetApp): void {
  const site = path.join(s.dir, 'nginx/conf.d', `${app.name}-site.conf`)
  writeFileSync(
    site,
    readFileSync(site, 'utf8').replace(
      '  location /',
      `  include ${s.dir}/nginx/conf.d/${app.name}-upstream.watch.inc;\n  location /`
    )
  )
}

/** Wait until every app server's deploy lock is free (the old color stops in the background). */
function settled(app: FleetApp): void {
  for (const s of apps) {
    const lock = path.join(s.dir, 'state', app.name, 'lock')
    if (existsSync(lock)) execFileSync('flock', ['-w', '30', lock, 'true'])
  }
}

function failures(stats: LoadStats): string {
  return `${stats.requests} requests, ${stats.non2xx} non-2xx, ${stats.errors} errors, ${stats.races} keep-alive races retried, slow ${stats.slowCompleted}/${stats.slowStarted}`
}

function expectNoFailures(stats: LoadStats): void {
  expect({ non2xx: stats.non2xx, errors: stats.errors, slowFailed: stats.slowFailed }).toEqual({
    non2xx: 0,
    errors: 0,
    slowFailed: 0
  })
}

async function loads(urls: string[], clientIds = 0): Promise<Load[]> {
  const per = Math.max(1, Math.floor(12 / urls.length))
  return Promise.all(
    urls.map((u) =>
      new Load().start(u, { keepalive: per, fresh: Math.max(1, per / 3), slow: 1, clientIds })
    )
  )
}

async function stopAll(ls: Load[]): Promise<LoadStats[]> {
  return Promise.all(ls.map((l) => l.stop()))
}

describe('shape 1: three app servers behind a load-balancer server', () => {
  let app: FleetApp
  beforeAll(() => {
    // secrets of every kind: the app servers read them, the load balancer's script refuses any
    app = fleetApp(
      'lb',
      { version: 'v1.0.0' },
      { env: 'FLEET_SECRET=only-for-app-servers', 'docker-run-args': '--label bgd.fleet=on-stdin' }
    )
  })

  test('first deploy, then v1 → v2 under load: one switch on the load balancer, 0 failed, nothing of v1 after it', async () => {
    const first = await deploy(app)
    expectOk(first)
    expect(first.outputs).toMatchObject({ deployed: 'true', color: 'blue', version: 'v1.0.0' })
    expect(await served(app)).toEqual(['v1.0.0'])
    expect(stateVersions(app)).toEqual(['v1.0.0', 'v1.0.0', 'v1.0.0'])
    const upstream = readFileSync(
      path.join(lb.dir, 'nginx/conf.d', `${app.name}-upstream.conf`),
      'utf8'
    )
    for (const s of apps)
      expect(upstream).toContain(`server ${s.address}:${Number(app.inputs['blue-port'])};`)
    settled(app)

    commitVersion({ ws: app.ws } as never, { version: 'v2.0.0', startDelay: 1 })
    const [load] = await loads(app.urls)
    const run = await deploy(app)
    const stats = (await stopAll([load!]))[0]!
    expectOk(run)
    const switched = timelineOf(run.outputs).switched!
    const lastV1 = lastServed(stats, 'v1.0.0')
    console.log(
      `shape 1, v1 -> v2 on 3 app servers: ${failures(stats)}; v1 last served ${lastV1 - switched} ms after the switch (bucket ${stats.bucketMs} ms); run ${run.ms} ms`
    )
    expect(run.outputs).toMatchObject({
      deployed: 'true',
      color: 'green',
      'previous-color': 'blue',
      version: 'v2.0.0'
    })
    expectNoFailures(stats)
    // requests in flight at the switch end on v1 (a slow one takes 3 s); none starts on v1 afterwards
    expect(lastV1 - switched).toBeLessThanOrEqual(3000 + 500)
    expect(await served(app)).toEqual(['v2.0.0'])
    expect(stateVersions(app)).toEqual(['v2.0.0', 'v2.0.0', 'v2.0.0'])
    expect(run.summary).toMatch(/Servers/)
    // each app server got the env and the run arguments; the load balancer, which would refuse
    // any secret line, got none (its run went through)
    expect((await httpGet(`${app.urls[0]}cgi-bin/env?FLEET_SECRET`)).body).toBe(
      'only-for-app-servers\n'
    )
    expect(run.log).toMatch(/The servers pull from \S+ anonymously/)
    settled(app)
    for (const s of apps) {
      expect(containers(s, app)).toEqual({
        [`${app.name}-blue`]: 'exited',
        [`${app.name}-green`]: 'running'
      })
      expect(
        execFileSync('docker', [
          '-H',
          s.docker!,
          'inspect',
          '-f',
          '{{index .Config.Labels "bgd.fleet"}}',
          `${app.name}-green`
        ])
          .toString()
          .trim()
      ).toBe('on-stdin')
    }
  }, 240_000)

  test('rollback under load: every app server back to v1 through one switch, 0 failed', async () => {
    const [load] = await loads(app.urls)
    const run = await rollback(app)
    const stats = (await stopAll([load!]))[0]!
    expectOk(run)
    console.log(`shape 1, rollback to v1: ${failures(stats)}; run ${run.ms} ms`)
    expect(run.outputs).toMatchObject({ deployed: 'true', color: 'blue', version: 'v1.0.0' })
    expectNoFailures(stats)
    expect(await served(app)).toEqual(['v1.0.0'])
    expect(stateVersions(app)).toEqual(['v1.0.0', 'v1.0.0', 'v1.0.0'])
    settled(app)
  }, 240_000)

  test('a version that never gets healthy on one server only: nothing is switched anywhere, 0 failed', async () => {
    // h2's engine holds a volume with the flag that makes this version sick there
    execFileSync('docker', ['-H', apps[1]!.docker!, 'volume', 'create', `${app.name}-flag`])
    const mp = execFileSync('docker', [
      '-H',
      apps[1]!.docker!,
      'volume',
      'inspect',
      '-f',
      '{{.Mountpoint}}',
      `${app.name}-flag`
    ])
      .toString()
      .trim()
    writeFileSync(path.join(mp, 'sick'), '')
    commitVersion({ ws: app.ws } as never, { version: 'v3.0.0', sickWithFlag: true })
    const [load] = await loads(app.urls)
    const run = await deploy(app, {
      inputs: { 'health-timeout': '4', 'docker-run-args': `-v ${app.name}-flag:/flag` }
    })
    const stats = (await stopAll([load!]))[0]!
    console.log(`shape 1, v3 sick on h2: ${failures(stats)}; exit ${run.code}`)
    expect(run.code).not.toBe(0)
    expect(run.log).toMatch(
      new RegExp(
        `Nothing was switched: ${apps[1]!.address.replace(/\./g, '\\.')} could not get ready: .*did not answer 2xx`
      )
    )
    expectNoFailures(stats)
    expect(stats.versions['v3.0.0']).toBeUndefined()
    expect(await served(app)).toEqual(['v1.0.0'])
    expect(stateVersions(app)).toEqual(['v1.0.0', 'v1.0.0', 'v1.0.0'])
    settled(app)
    // the prepared color was removed everywhere; the serving one runs
    for (const s of apps) expect(containers(s, app)[`${app.name}-green`]).toBeUndefined()
    for (const s of apps) expect(containers(s, app)[`${app.name}-blue`]).toBe('running')
  }, 240_000)

  test('promote: false prepares v4 and its preview route; promote: true switches to it without building again', async () => {
    const previewFile = `${NGINX}/conf.d/${app.name}-preview.inc`
    commitVersion({ ws: app.ws } as never, { version: 'v4.0.0' })
    const prepared = await deploy(app, {
      inputs: { promote: 'false', 'nginx-preview-file': previewFile }
    })
    expectOk(prepared)
    expect(prepared.outputs).toMatchObject({ deployed: 'false', color: 'green', version: 'v4.0.0' })
    expect(prepared.log).toMatch(/is prepared on 3 app server\(s\) behind 198\.18\.0\.20 as green/)
    expect(prepared.summary).toMatch(/\/green\/ on the nginx of 198\.18\.0\.20/)
    expect(await served(app)).toEqual(['v1.0.0'])
    const preview = await httpGet(`${app.urls[0]}green/`)
    expect(preview).toEqual({ status: 200, body: 'v4.0.0\n' })
    expect((await httpGet(`${app.urls[0]}blue/`)).body).toBe('v1.0.0\n')
    // any path, by header or cookie (the header wins); without either, the live version
    const asking = (headers: Record<string, string>) =>
      httpGet(`${app.urls[0]}`, 5000, headers).then((r) => r.body)
    expect(await asking({ 'X-Bg-Preview': 'green' })).toBe('v4.0.0\n')
    expect(await asking({ Cookie: 'a=1; bg_preview=green' })).toBe('v4.0.0\n')
    expect(await asking({ 'X-Bg-Preview': 'blue', Cookie: 'bg_preview=green' })).toBe('v1.0.0\n')
    expect(await asking({})).toBe('v1.0.0\n')

    const [load] = await loads(app.urls)
    const promoted = await deploy(app, { inputs: { 'nginx-preview-file': previewFile } })
    const stats = (await stopAll([load!]))[0]!
    expectOk(promoted)
    console.log(`shape 1, promote v4: ${failures(stats)}; run ${promoted.ms} ms`)
    expect(promoted.log).toMatch(/holds this commit already .*not built again/)
    expect(promoted.log).toMatch(/promoting it/)
    expect(promoted.outputs).toMatchObject({ deployed: 'true', color: 'green', version: 'v4.0.0' })
    expectNoFailures(stats)
    expect(await served(app)).toEqual(['v4.0.0'])
    expect(
      await registryTags(svc.registry, app.inputs.image!.slice(svc.registry.length + 1))
    ).toContain('latest')
    settled(app)
  }, 240_000)

  test("the watch on the load balancer (its nginx with access_log off at the http level): refused until the site includes bg-deploy's file; then a version that degrades is switched back on every app server in one write, the old colors warm meanwhile", async () => {
    const site = path.join(lb.dir, 'nginx/conf.d', `${app.name}-site.conf`)
    const include = `${NGINX}/conf.d/${app.name}-upstream.watch.inc`
    // without the previews of the test before (a preview file would carry the watch's line itself)
    rmSync(path.join(lb.dir, 'nginx/conf.d', `${app.name}-preview.inc`), { force: true })
    commitVersion({ ws: app.ws } as never, {
      version: 'v5.0.0',
      failsLater: { after: 3, inTen: 5 }
    })
    const refused = await deploy(app, { inputs: { watch: '20' } })
    expect(refused.code).not.toBe(0)
    expect(refused.log).toContain(
      `'access_log off' at the http level (${NGINX}/nginx.conf:6) turns off the watch's log too for the server block at ${site}:1: add 'include ${include};' in that server block.`
    )
    expect(await served(app)).toEqual(['v4.0.0'])
    for (const s of apps) expect(containers(s, app)[`${app.name}-blue`]).toBe('exited')
    // nginx itself reads its files by their real path
    includeWatchFile(lb, app)
    settled(app)
    const [load] = await loads(app.urls)
    const run = await deploy(app, { inputs: { watch: '20' } })
    await sleep(500)
    const stats = (await stopAll([load!]))[0]!
    console.log(
      `shape 1, watch on the load balancer, v5 degrading: ${failures(stats)}; exit ${run.code}: ${/the watch window switched back[^\n]*/.exec(run.log)?.[0]}`
    )
    expect(run.code).not.toBe(0)
    expect(run.log).toMatch(
      /the watch window switched back from v5\.0\.0: \d+ of its \d+ answers were 5xx, more than 1 %/
    )
    expect(run.log).toMatch(/before the switch the previous version answered \d+ request/)
    expect(stats.errors).toBe(0)
    expect(stats.non2xx).toBeGreaterThan(0)
    expect(await served(app)).toEqual(['v4.0.0'])
    expect(stateVersions(app)).toEqual(['v4.0.0', 'v4.0.0', 'v4.0.0'])
    settled(app)
    // the old color served throughout; the new one is stopped and kept for its logs, everywhere
    for (const s of apps)
      expect(containers(s, app)).toEqual({
        [`${app.name}-blue`]: 'exited',
        [`${app.name}-green`]: 'running'
      })
  }, 240_000)

  test("a good version passes the load balancer's watch: every app server then stops its old color; 0 failed", async () => {
    commitVersion({ ws: app.ws } as never, { version: 'v6.0.0' })
    const [load] = await loads(app.urls)
    const run = await deploy(app, { inputs: { watch: '5' } })
    const stats = (await stopAll([load!]))[0]!
    console.log(
      `shape 1, watch on the load balancer, v6 good: ${failures(stats)}; run ${run.ms} ms`
    )
    expectOk(run)
    expect(run.log).toMatch(
      /the watch passed: in 5\.\d s after the switch nginx answered [1-9]\d* request/
    )
    // the job summary has the load balancer's figures, as one server's run has its own
    expect(run.summary).toMatch(
      /passed: the new version \d+ of [1-9]\d* answers 5xx \(\d+\.\d %\); the version it replaced, just before the switch, \d+ of \d+ answers 5xx/
    )
    expectNoFailures(stats)
    expect(await served(app)).toEqual(['v6.0.0'])
    expect(stateVersions(app)).toEqual(['v6.0.0', 'v6.0.0', 'v6.0.0'])
    settled(app)
    for (const s of apps) expect(containers(s, app)[`${app.name}-green`]).toBe('exited')
  }, 240_000)

  test('preview-allow: a client outside it gets 403 on the preview routes and the live version whatever it sends', async () => {
    const previewFile = `${NGINX}/conf.d/${app.name}-preview.inc`
    commitVersion({ ws: app.ws } as never, { version: 'v7.0.0' })
    const prepared = await deploy(app, {
      inputs: { promote: 'false', 'nginx-preview-file': previewFile, 'preview-allow': '10.0.0.0/8' }
    })
    expectOk(prepared)
    expect(await served(app)).toEqual(['v6.0.0'])
    expect((await httpGet(`${app.urls[0]}green/`)).status).toBe(403)
    expect((await httpGet(`${app.urls[0]}`, 5000, { 'X-Bg-Preview': 'green' })).body).toBe(
      'v6.0.0\n'
    )
    settled(app)
  }, 240_000)

  test('canary on the load balancer: a version that answers 500 to everything is switched back in the first step on every app server in one write; a good one goes 10 %, 50 %, then the full switch; 0 failed', async () => {
    const canary = { canary: '10,50', 'canary-key': '$http_x_client' }
    // without the previews of the test before: this run names no preview file
    rmSync(path.join(lb.dir, 'nginx/conf.d', `${app.name}-preview.inc`), { force: true })
    commitVersion({ ws: app.ws } as never, {
      version: 'v8.0.0',
      failsLater: { after: 0, inTen: 10 }
    })
    let [load] = await loads(app.urls, 2000)
    const bad = await deploy(app, { inputs: { ...canary, 'canary-step-time': '20', watch: '10' } })
    await sleep(500)
    let stats = (await stopAll([load!]))[0]!
    console.log(
      `shape 1, canary on the load balancer, v8 failing: ${failures(stats)}; exit ${bad.code}: ${/the canary switched back[^\n]*/.exec(bad.log)?.[0]}`
    )
    expect(bad.code).not.toBe(0)
    expect(bad.log).toMatch(
      /the canary switched back from v8\.0\.0: \d+ of its \d+ answers were 5xx, more than the old version's [\d.]+ % \+ 1 beyond chance; at 10 % of clients/
    )
    expect(bad.log).not.toMatch(/nginx sends 50 % of clients/)
    expect(stats.errors).toBe(0)
    expect(stats.non2xx).toBeGreaterThan(0)
    // a tenth of the clients hurt: far fewer 500s than answers in the same time
    expect(stats.non2xx).toBeLessThan(stats.requests / 5)
    expect(await served(app)).toEqual(['v6.0.0'])
    expect(stateVersions(app)).toEqual(['v6.0.0', 'v6.0.0', 'v6.0.0'])
    settled(app)
    for (const s of apps) expect(containers(s, app)[`${app.name}-blue`]).toBe('running')
    commitVersion({ ws: app.ws } as never, { version: 'v9.0.0' })
    ;[load] = await loads(app.urls, 2000)
    const good = await deploy(app, { inputs: { ...canary, 'canary-step-time': '4', watch: '3' } })
    stats = (await stopAll([load!]))[0]!
    console.log(
      `shape 1, canary on the load balancer, v9 good: ${failures(stats)}; run ${good.ms} ms`
    )
    expectOk(good)
    expect(good.log).toMatch(/canary step passed: at 10 % of clients/)
    expect(good.log).toMatch(/canary step passed: at 50 % of clients/)
    expectNoFailures(stats)
    expect(await served(app)).toEqual(['v9.0.0'])
    expect(stateVersions(app)).toEqual(['v9.0.0', 'v9.0.0', 'v9.0.0'])
    settled(app)
  }, 300_000)
})

/** The pids of the sshd processes serving connections to server `s` (not its listener). */
function sessionsOf(s: TestServer): number[] {
  const master = readFileSync(path.join(s.dir, 'sshd.pid'), 'utf8').trim()
  const r = spawnSync('pgrep', ['-P', master], { encoding: 'utf8' })
  return r.stdout.split('\n').filter(Boolean).map(Number)
}

/** Resolves once server `s`'s journal for the app says `stage`. */
async function journalSays(s: TestServer, app: FleetApp, stage: string): Promise<void> {
  const f = path.join(s.dir, 'state', app.name, 'journal')
  for (let i = 0; i < 3000; i++) {
    if (existsSync(f) && readFileSync(f, 'utf8').includes(`stage=${stage}\n`)) return
    await sleep(10)
  }
  throw new Error(`${s.name} never reached ${stage}`)
}

describe('shape 2: three servers, each with its own nginx', () => {
  let app: FleetApp
  /** makes h2's nginx reload take 2 s: a switch there is still running when the others are done */
  const slowReload = () => writeFileSync(path.join(apps[1]!.dir, 'state', 'slow-reload'), '')
  const fastReload = () => rmSync(path.join(apps[1]!.dir, 'state', 'slow-reload'), { force: true })
  beforeAll(() => {
    app = fleetApp(
      'each',
      { version: 'v1.0.0' },
      {
        'nginx-reload-command': `if [ -e /var/lib/bg-deploy/slow-reload ]; then sleep 2; fi; nginx -c ${NGINX}/nginx.conf -s reload`
      }
    )
  })

  test('first deploy on every server, then v2 with the SSH session to one server cut during the commit: all switch back; the next run switches all; 0 failed', async () => {
    expectOk(await deploy(app))
    expect(await served(app)).toEqual(['v1.0.0', 'v1.0.0', 'v1.0.0'])
    settled(app)

    commitVersion({ ws: app.ws } as never, { version: 'v2.0.0' })
    slowReload()
    const ls = await loads(app.urls)
    const running = deploy(app)
    await journalSays(apps[0]!, app, 'switched')
    for (const pid of sessionsOf(apps[1]!)) process.kill(pid, 'SIGKILL')
    const cut = await running
    fastReload()
    // every server had switched or was switching, and undoes it (h2 on its own, once its reload is done)
    const undone = await settleOn(app, 'undone')
    const mid = await served(app)
    const again = await deploy(app)
    const stats = await stopAll(ls)
    console.log(
      `shape 2, session to h2 cut in the commit: exit ${cut.code}; after it the servers answered ${mid.join(' ')}; then ${stats.map(failures).join(' | ')}`
    )
    expect(cut.code).not.toBe(0)
    expect(cut.log).toMatch(/198\.18\.0\.12 could not switch/)
    expect(mid).toEqual(['v1.0.0', 'v1.0.0', 'v1.0.0'])
    expect(undone).toEqual([['undone'], ['undone'], ['undone']])
    // h2 lost its runner: what it did after is in its own log
    expect(
      readFileSync(path.join(apps[1]!.dir, 'state', app.name, 'runner-gone.log'), 'utf8')
    ).toMatch(/went away .* at: switched/)
    expectOk(again)
    expect(await served(app)).toEqual(['v2.0.0', 'v2.0.0', 'v2.0.0'])
    expect(stateVersions(app)).toEqual(['v2.0.0', 'v2.0.0', 'v2.0.0'])
    for (const s of stats) expectNoFailures(s)
    settled(app)
  }, 300_000)

  test('v3 with the runner killed during the commit: every server on one version; the next run switches all; 0 failed', async () => {
    commitVersion({ ws: app.ws } as never, { version: 'v3.0.0' })
    slowReload()
    const ls = await loads(app.urls)
    let pid = 0
    const running = deploy(app, { onSpawn: (p) => (pid = p) })
    await journalSays(apps[0]!, app, 'switched')
    process.kill(pid, 'SIGKILL')
    const killed = await running
    fastReload()
    // the servers notice the runner is gone and undo their switch
    const undone = await settleOn(app, 'undone')
    const mid = await served(app)
    const again = await deploy(app)
    const stats = await stopAll(ls)
    console.log(
      `shape 2, runner killed in the commit: exit ${killed.code}; after it the servers answered ${mid.join(' ')}; then ${stats.map(failures).join(' | ')}`
    )
    expect(mid).toEqual(['v2.0.0', 'v2.0.0', 'v2.0.0'])
    expect(undone).toEqual([['undone'], ['undone'], ['undone']])
    expectOk(again)
    expect(await served(app)).toEqual(['v3.0.0', 'v3.0.0', 'v3.0.0'])
    expect(stateVersions(app)).toEqual(['v3.0.0', 'v3.0.0', 'v3.0.0'])
    for (const s of stats) expectNoFailures(s)
    settled(app)
  }, 300_000)

  test("the watch on every server's own nginx (access_log off at the http level): refused until each site includes bg-deploy's file; then the runner sums what every nginx sees, and a version that degrades is switched back on every server", async () => {
    const serving = Object.entries(containers(apps[0]!, app)).find(([, st]) => st === 'running')![0]
    const old = serving.endsWith('-blue') ? 'blue' : 'green'
    const fresh = old === 'blue' ? 'green' : 'blue'
    const before = await served(app)
    commitVersion({ ws: app.ws } as never, {
      version: 'v4.0.0',
      failsLater: { after: 3, inTen: 5 }
    })
    const refused = await deploy(app, { inputs: { watch: '20' } })
    expect(refused.code).not.toBe(0)
    expect(refused.log).toMatch(
      /Nothing was switched: .*the watch would not see nginx's answers .*'access_log off' at the http level .*add 'include \/srv\/bgd-nginx\/conf\.d\/each-\S+-upstream\.watch\.inc;' in that server block/
    )
    expect(await served(app)).toEqual(before)
    for (const s of apps) includeWatchFile(s, app)
    settled(app)
    const ls = await loads(app.urls)
    const run = await deploy(app, { inputs: { watch: '20' } })
    await sleep(500)
    const stats = await stopAll(ls)
    console.log(
      `shape 2, watch summed over 3 servers, v4 degrading: ${stats.map(failures).join(' | ')}; exit ${run.code}: ${/the watch window switched back from \S+ on every server[^\n]*/.exec(run.log.replace(/%25/g, '%'))?.[0]}`
    )
    expect(run.code).not.toBe(0)
    // the run's error, as its annotation carries it (a % written %25)
    expect(run.log.replace(/%25/g, '%')).toMatch(
      /the watch window switched back from v4\.0\.0 on every server: \d+ of its \d+ answers were 5xx, more than 1 %; every server's nginx answered \d+ request\(s\) for it, \d+ of them 5xx \([\d.]+ %\); before the switch the previous version answered [1-9]\d*, 0 of them 5xx/
    )
    for (const st of stats) expect(st.errors).toBe(0)
    expect(stats.reduce((n, st) => n + st.non2xx, 0)).toBeGreaterThan(0)
    expect(await served(app)).toEqual(before)
    settled(app)
    for (const s of apps)
      expect(containers(s, app)).toEqual({
        [`${app.name}-${old}`]: 'running',
        [`${app.name}-${fresh}`]: 'exited'
      })
  }, 240_000)

  test("a good version passes the runner's summed watch: every server finishes; 0 failed", async () => {
    commitVersion({ ws: app.ws } as never, { version: 'v5.0.0' })
    const ls = await loads(app.urls)
    const run = await deploy(app, { inputs: { watch: '5' } })
    const stats = await stopAll(ls)
    console.log(
      `shape 2, summed watch, v5 good: ${stats.map(failures).join(' | ')}; run ${run.ms} ms`
    )
    expectOk(run)
    for (const st of stats) expectNoFailures(st)
    // the job summary has the runner's sum over every server's nginx
    expect(run.summary).toMatch(
      /passed: the new version \d+ of [1-9]\d* answers 5xx \(\d+\.\d %\); the version it replaced, just before the switch, \d+ of [1-9]\d* answers 5xx/
    )
    expect(await served(app)).toEqual(['v5.0.0', 'v5.0.0', 'v5.0.0'])
    settled(app)
  }, 240_000)
})

// keep the type import used
export type { ActionRun }

describe('a real application on three app servers behind the load balancer', () => {
  let app: FleetApp
  let data: string
  const taskLines = () =>
    existsSync(path.join(data, 'tasks'))
      ? readFileSync(path.join(data, 'tasks'), 'utf8').trim().split('\n')
      : []
  beforeAll(() => {
    // one directory every server's engine mounts: the task's count across the fleet
    data = execFileSync('mktemp', ['-d', '/tmp/bgd-fleet-task-XXXX']).toString().trim()
    execFileSync('chmod', ['777', data])
    app = fleetApp(
      'lb',
      { version: 'v1.0.0' },
      {
        env: 'GREETING=hello-v1',
        'health-path': '/health',
        'docker-run-args': `-v ${data}:/data`,
        'pre-switch-command': `sh -c 'echo "migrated $GREETING $(hostname)" >> /data/tasks'`
      }
    )
  })

  test('the task runs once per deploy on the first server, before any server starts the new color; its failure leaves every server on the old version; 0 failed', async () => {
    expectOk(await deploy(app))
    expect(taskLines()).toHaveLength(1)
    settled(app)
    commitVersion({ ws: app.ws } as never, { version: 'v2.0.0', startDelay: 1 })
    const [load] = await loads(app.urls)
    const run = await deploy(app, { inputs: { env: 'GREETING=hello-v2' } })
    expectOk(run)
    settled(app)
    const lines = taskLines()
    expect(lines).toHaveLength(2)
    expect(lines[1]).toMatch(/^migrated hello-v2 /)
    // the task's session ends before any server's script starts a color
    const taskDone = run.log.indexOf('pre-switch task: done')
    expect(taskDone).toBeGreaterThan(0)
    expect(run.log.indexOf(`starting ${app.name}-green`)).toBeGreaterThan(taskDone)
    expect(run.log.match(/pre-switch task: running/g)).toHaveLength(1)

    commitVersion({ ws: app.ws } as never, { version: 'v3.0.0' })
    // pre-switch-host: this time the second server runs it
    const failed = await deploy(app, {
      inputs: {
        env: 'GREETING=hello-v3',
        'pre-switch-command': 'sh -c "exit 3"',
        'pre-switch-host': apps[1]!.address
      }
    })
    const stats = (await stopAll([load!]))[0]!
    console.log(`a real application, 3 app servers: task once per deploy; ${failures(stats)}`)
    expect(failed.code).toBe(1)
    expect(failed.log).toMatch(
      /failed with exit code 3\. Nothing was started or switched: no server was changed/
    )
    expect(failed.log).not.toMatch(/starting \S+-blue/)
    expect(failed.log).toContain(`${apps[1]!.address}: the pre-switch task runs here first`)
    expectNoFailures(stats)
    expect(await served(app)).toEqual(['v2.0.0'])
    expect(stateVersions(app)).toEqual(['v2.0.0', 'v2.0.0', 'v2.0.0'])
    for (const s of apps)
      expect(Object.keys(containers(s, app)).sort()).toEqual([
        `${app.name}-blue`,
        `${app.name}-green`
      ])
    settled(app)
  }, 300_000)

  test('rollback with only `rollback: previous` on the slow path: every server back on v1 with its env and health path, 0 failed', async () => {
    for (const s of apps) execFileSync('docker', ['-H', s.docker!, 'rm', '-f', `${app.name}-blue`])
    const bare = Object.fromEntries(
      Object.entries(app.inputs).filter(
        ([k]) => !['env', 'health-path', 'docker-run-args', 'pre-switch-command'].includes(k)
      )
    )
    const [load] = await loads(app.urls)
    const run = await deploy(
      { ...app, inputs: bare },
      {
        inputs: { rollback: 'previous' },
        eventName: 'workflow_dispatch',
        event: { inputs: { rollback: 'previous' } }
      }
    )
    const stats = (await stopAll([load!]))[0]!
    console.log(
      `a real application, rollback on the slow path: ${failures(stats)}; run ${run.ms} ms`
    )
    expectOk(run)
    expect(run.log.match(/slow path: no kept container for v1\.0\.0/g)).toHaveLength(3)
    expect(run.log.match(/polling http:\/\/\S+\/health /g)?.length).toBeGreaterThanOrEqual(3)
    expectNoFailures(stats)
    expect(await served(app)).toEqual(['v1.0.0'])
    expect((await httpGet(`${app.urls[0]}cgi-bin/env?GREETING`)).body).toBe('hello-v1\n')
    expect(stateVersions(app)).toEqual(['v1.0.0', 'v1.0.0', 'v1.0.0'])
    expect(taskLines()).toHaveLength(2)
    settled(app)
  }, 300_000)

  test('workers: the job worker on every server, the scheduler on the first only; v4 → v5 swaps them with never two schedulers; 0 failed', async () => {
    const tick = (file: string) =>
      `sh -c 'while true; do echo "$(cut -d" " -f1 /proc/uptime) $(hostname) $GREETING" >> /data/${file}; sleep 0.2; done'`
    const workers = [`jobs: ${tick('jobs')}`, `scheduler single: ${tick('sched')}`].join('\n')
    const running = (name: string) =>
      apps.map((s) => (containers(s, app)[name] === 'running' ? 1 : 0))
    commitVersion({ ws: app.ws } as never, { version: 'v4.0.0' })
    expectOk(await deploy(app, { inputs: { env: 'GREETING=v4', workers } }))
    settled(app)
    // v4 serves from green (v1 was put back in blue)
    expect(running(`${app.name}-green-jobs`)).toEqual([1, 1, 1])
    expect(running(`${app.name}-green-scheduler`)).toEqual([1, 0, 0])
    commitVersion({ ws: app.ws } as never, { version: 'v5.0.0', startDelay: 1 })
    const [load] = await loads(app.urls)
    const run = await deploy(app, { inputs: { env: 'GREETING=v5', workers } })
    const stats = (await stopAll([load!]))[0]!
    expectOk(run)
    settled(app)
    expect(running(`${app.name}-blue-jobs`)).toEqual([1, 1, 1])
    expect(running(`${app.name}-blue-scheduler`)).toEqual([1, 0, 0])
    expect(running(`${app.name}-green-jobs`)).toEqual([0, 0, 0])
    expect(running(`${app.name}-green-scheduler`)).toEqual([0, 0, 0])
    const read = (f: string) =>
      readFileSync(path.join(data, f), 'utf8')
        .trim()
        .split('\n')
        .map((l) => l.split(' '))
        .map(([t, id, v]) => ({ t: Number(t), id: id!, v: v! }))
    const sched = read('sched')
    const spans = new Map<string, [number, number]>()
    for (const { t, id } of sched) {
      const x = spans.get(id)
      spans.set(id, x ? [Math.min(x[0], t), Math.max(x[1], t)] : [t, t])
    }
    const all = [...spans.values()].sort((a, b) => a[0] - b[0])
    for (let i = 1; i < all.length; i++) expect(all[i]![0]).toBeGreaterThan(all[i - 1]![1])
    expect(sched.at(-1)?.v).toBe('v5')
    const jobTimes = read('jobs')
      .map((x) => x.t)
      .sort((a, b) => a - b)
    const gap = jobTimes.slice(1).reduce((g, t, i) => Math.max(g, t - jobTimes[i]!), 0)
    console.log(
      `workers, 3 app servers: ${spans.size} schedulers one after the other; longest moment without a job worker ${gap.toFixed(2)} s; ${failures(stats)}`
    )
    expect(gap).toBeLessThan(1)
    expectNoFailures(stats)
    expect(await served(app)).toEqual(['v5.0.0'])
  }, 300_000)

  test("compose-file on the three app servers: the web and its worker from the file on every server; v7 under load swaps the worker and keeps each server's volume data; the rollback puts v6 back as it ran; 0 failed", async () => {
    mkdirSync(path.join(app.ws, 'deploy'), { recursive: true })
    writeFileSync(path.join(app.ws, 'deploy/app.env'), 'SECRET_KEY=from-env-file\n')
    writeFileSync(
      path.join(app.ws, 'docker-compose.yml'),
      `
x-app: &app
  build: .
  env_file: deploy/app.env
  environment: { GREETING: "\${GREETING:-from-compose}" }
  volumes: [data:/data]
services:
  web:
    <<: *app
    ports: ["8080"]
    command: ["/bin/sh", "-c", "echo from-compose-command > /www/cmd.txt; exec /start.sh"]
    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/health"]
      interval: 500ms
  ticker:
    <<: *app
    command: ["/bin/sh", "-c", "while true; do echo \\"$$GREETING\\" >> /data/ticks; sleep 0.5; done"]
    stop_grace_period: 2s
volumes:
  data: {}
`
    )
    // the file replaces what the earlier tests gave as inputs
    const composed = {
      ...Object.fromEntries(
        Object.entries(app.inputs).filter(
          ([k]) => !['env', 'docker-run-args', 'pre-switch-command'].includes(k)
        )
      ),
      'compose-file': 'docker-compose.yml'
    }
    const dk = (s: TestServer, ...args: string[]) =>
      execFileSync('docker', ['-H', s.docker!, ...args])
        .toString()
        .trim()
    const ticks = (s: TestServer) =>
      dk(
        s,
        'run',
        '--rm',
        '-v',
        `${app.name}_data:/data`,
        '--entrypoint',
        '/bin/cat',
        image,
        '/data/ticks'
      ).split('\n')
    const image = dk(apps[0]!, 'inspect', '-f', '{{.Config.Image}}', `${app.name}-blue`)
    commitVersion({ ws: app.ws } as never, { version: 'v6.0.0' })
    const first = await deploy({ ...app, inputs: composed })
    expectOk(first)
    settled(app)
    expect(await served(app)).toEqual(['v6.0.0'])
    for (const s of apps) {
      expect(dk(s, 'exec', `${app.name}-green`, 'cat', '/www/cmd.txt')).toBe('from-compose-command')
      expect(containers(s, app)[`${app.name}-green-ticker`]).toBe('running')
    }
    await sleep(1500)
    const before = apps.map(ticks)
    for (const t of before) expect(t[0]).toBe('from-compose')

    commitVersion({ ws: app.ws } as never, { version: 'v7.0.0', startDelay: 1 })
    let [load] = await loads(app.urls)
    const run = await deploy({ ...app, inputs: composed }, { env: { GREETING: 'from-the-runner' } })
    let stats = (await stopAll([load!]))[0]!
    console.log(`compose-file, 3 app servers, v6 -> v7: ${failures(stats)}; run ${run.ms} ms`)
    expectOk(run)
    settled(app)
    expectNoFailures(stats)
    expect(await served(app)).toEqual(['v7.0.0'])
    expect((await httpGet(`${app.urls[0]}cgi-bin/env?GREETING`)).body).toBe('from-the-runner\n')
    await sleep(1500)
    apps.forEach((s, i) => {
      expect(containers(s, app)[`${app.name}-blue-ticker`]).toBe('running')
      expect(containers(s, app)[`${app.name}-green-ticker`]).not.toBe('running')
      const after = ticks(s)
      expect(after.slice(0, before[i]!.length)).toEqual(before[i])
      expect(after.at(-1)).toBe('from-the-runner')
    })

    ;[load] = await loads(app.urls)
    const back = await deploy(
      { ...app, inputs: { ...composed, 'compose-file': '' } },
      {
        inputs: { rollback: 'previous' },
        eventName: 'workflow_dispatch',
        event: { inputs: { rollback: 'previous' } }
      }
    )
    stats = (await stopAll([load!]))[0]!
    console.log(
      `compose-file, 3 app servers, rollback to v6: ${failures(stats)}; run ${back.ms} ms`
    )
    expectOk(back)
    expectNoFailures(stats)
    expect(await served(app)).toEqual(['v6.0.0'])
    expect((await httpGet(`${app.urls[0]}cgi-bin/env?GREETING`)).body).toBe('from-compose\n')
    expect((await httpGet(`${app.urls[0]}cgi-bin/env?SECRET_KEY`)).body).toBe('from-env-file\n')
    for (const s of apps)
      expect(dk(s, 'exec', `${app.name}-green`, 'cat', '/www/cmd.txt')).toBe('from-compose-command')
    settled(app)
  }, 400_000)
})
