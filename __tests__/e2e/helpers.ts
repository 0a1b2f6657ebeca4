// Shared fixture for end-to-end tests: the real services started by scripts/services.sh,
// the action run as GitHub runs it, a stand-in for GitHub's release API, and sample apps.
// What `npm run demo` and `npm run bench` use too lives in scripts/harness/index.mjs.
import { execFileSync } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, writeFileSync, rmSync } from 'node:fs'
import path from 'node:path'
import {
  appStateDir,
  sleep as pause,
  commitAppVersion,
  removeApp as removeAppFiles,
  docker,
  headMessage,
  headSha,
  httpGet,
  makeWorkspace,
  runAction,
  services,
  type ActionRun,
  type AppBehaviour,
  type RunOptions,
  type Services
} from '../../scripts/harness/index.mjs'

export {
  FakeGitHub,
  Load,
  ROOT,
  docker,
  firstServed,
  headSha,
  httpGet,
  lastServed,
  makeWorkspace,
  parseOutputFile,
  runAction,
  services,
  sleep,
  timelineOf,
  writeAppSource,
  type ActionRun,
  type ApiRequest,
  type AppBehaviour,
  type LoadStats,
  type RunOptions,
  type Services
} from '../../scripts/harness/index.mjs'

/**
 * Wait for the moment a test needs (a phase in the log, a container), however busy the machine:
 * polled every 20 ms up to `boundMs`, then an error that says what it waited for.
 */
export async function waitFor(
  what: string,
  ready: () => boolean,
  boundMs = 120_000
): Promise<void> {
  const end = Date.now() + boundMs
  while (!ready()) {
    if (Date.now() > end) throw new Error(`gave up after ${boundMs / 1000} s waiting for ${what}`)
    await pause(20)
  }
}

/**
 * The log as the runner shows it: `::add-mask::` commands are consumed by the runner, so a
 * secret may appear there (that is how it gets masked) and nowhere else.
 */
export function visibleLog(run: ActionRun): string {
  return run.log
    .split('\n')
    .filter((l) => !l.startsWith('::add-mask::'))
    .join('\n')
}

/** Tags of a repository in the loopback registry ([] when it has none). */
export async function registryTags(registry: string, repository: string): Promise<string[]> {
  const r = await httpGet(`http://${registry}/v2/${repository}/tags/list`)
  if (r.status === 404) return []
  return ((JSON.parse(r.body) as { tags: string[] | null }).tags ?? []).sort()
}

/** The manifest digest a tag names in the loopback registry (undefined when there is no such tag). */
export async function registryDigest(
  registry: string,
  repository: string,
  tag: string
): Promise<string | undefined> {
  const r = await fetch(`http://${registry}/v2/${repository}/manifests/${tag}`, {
    method: 'HEAD',
    headers: {
      accept:
        'application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json'
    }
  })
  return r.ok ? (r.headers.get('docker-content-digest') ?? undefined) : undefined
}

/** Fail with the whole log when a run did not exit 0. */
export function expectOk(run: ActionRun): void {
  if (run.code !== 0) throw new Error(`action exited ${run.code}; log:\n${run.log}`)
}

/**
 * A block of 10 ports no other app of this or any concurrent test file holds: a slot is claimed by
 * creating its directory (atomic). Ports stay below 32768, Linux's ephemeral range, where the load
 * generator's own client connections could already hold them.
 */
function claimPorts(svc: Services): number {
  const dir = path.join(svc.dir, 'port-slots')
  mkdirSync(dir, { recursive: true })
  const start = Math.floor(Math.random() * 1200)
  for (let i = 0; i < 1200; i++) {
    const slot = (start + i) % 1200
    try {
      mkdirSync(path.join(dir, String(slot)))
      return 20000 + slot * 10
    } catch {
      /* taken */
    }
  }
  throw new Error(`no free port slot left in ${dir}`)
}

export interface TestApp {
  name: string
  repo: string
  lbPort: number
  url: string
  inputs: Record<string, string>
  ws: string
}

/**
 * A new app: a workspace at version `v`, an nginx site on its own port that proxies to the
 * app's upstream (written but not loaded: the first deploy's reload loads it), and inputs.
 */
export function newApp(
  svc: Services,
  prefix: string,
  behaviour: AppBehaviour,
  extra: Record<string, string> = {}
): TestApp {
  const base = claimPorts(svc)
  const name = `${prefix}-${Date.now().toString(36)}${base}`
  const lbPort = base
  writeFileSync(
    path.join(svc.nginxConfd, `${name}-site.conf`),
    `server {\n  listen 127.0.0.1:${lbPort};\n  location / { proxy_pass http://${name}; }\n}\n`
  )
  const ws = makeWorkspace(behaviour, `initial ${behaviour.version}`)
  return {
    name,
    repo: `e2e/${name}`,
    lbPort,
    url: `http://127.0.0.1:${lbPort}/`,
    ws,
    inputs: {
      image: `${svc.registry}/e2e/${name}`,
      'github-token': 'ghs_faketoken0123456789',
      'create-release': 'false',
      host: svc.sshHost,
      port: String(svc.sshPort),
      username: svc.sshUser,
      'ssh-key': svc.sshKey,
      'host-fingerprint': svc.fingerprintEd25519,
      'app-name': name,
      'blue-port': String(base + 1),
      'green-port': String(base + 2),
      'health-interval': '0.2',
      'drain-timeout': '10',
      'docker-run-args': '--label bg-deploy.test=1',
      'nginx-upstream-file': `${svc.nginxConfd}/${name}-upstream.conf`,
      'nginx-test-command': `nginx -t -q -c ${svc.nginxConf}`,
      'nginx-reload-command': `nginx -c ${svc.nginxConf} -s reload`,
      ...extra
    }
  }
}

/** Change the workspace to a new version of the app and commit it; returns the push event. */
export function commitVersion(
  app: TestApp,
  behaviour: AppBehaviour
): { event: object; sha: string } {
  return commitAppVersion(app.ws, behaviour)
}

/** Deploy the version currently committed in the app's workspace. */
export function deployApp(
  app: TestApp,
  opts: Partial<RunOptions> & { inputs?: Record<string, string> } = {}
): Promise<ActionRun> {
  const sha = headSha(app.ws)
  const message = headMessage(app.ws)
  return runAction(
    { ...app.inputs, ...opts.inputs },
    { workspace: app.ws, sha, event: { head_commit: { id: sha, message } }, ...opts }
  )
}

/** The app's state directory on the (root) test server. */
export function stateDir(app: TestApp): string {
  return appStateDir(app.name)
}

/** The app's deploy history on the server, one array of fields per row, oldest first. */
export function historyRows(app: TestApp): string[][] {
  return readFileSync(path.join(stateDir(app), 'history'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => l.split('\t'))
}

/** The fields of the newest history row. */
export function lastHistory(app: TestApp): string[] {
  return historyRows(app).at(-1)!
}

/** A rollback run as a workflow_dispatch: no head_commit, the input typed into the box. */
export function rollbackApp(
  app: TestApp,
  target = 'previous',
  inputs: Record<string, string> = {}
): Promise<ActionRun> {
  return deployApp(app, {
    inputs: { rollback: target, ...inputs },
    eventName: 'workflow_dispatch',
    event: { inputs: { rollback: target } }
  })
}

/** Remove everything an app left: containers, its nginx files (and reload), its state. */
export function removeApp(svc: Services, app: TestApp): void {
  const portSlot = path.join(svc.dir, 'port-slots', String((app.lbPort - 20000) / 10))
  removeAppFiles(svc, app.name, [portSlot, app.ws])
}

/** Remove the app's nginx site if its upstream file does not exist (so nginx -t passes for others). */
export function dropSiteWithoutUpstream(svc: Services, app: TestApp): void {
  if (!existsSync(path.join(svc.nginxConfd, `${app.name}-upstream.conf`)))
    rmSync(path.join(svc.nginxConfd, `${app.name}-site.conf`), { force: true })
}

/**
 * For a test file: registers the hooks that read the services once and clean up every app made
 * through `newApp` — after each test, the nginx site of an app whose first deploy failed on purpose
 * (it would make every later nginx -t fail); after the file, everything the apps left.
 */
export function appFixture(): {
  services: () => Services
  newApp: (prefix: string, behaviour: AppBehaviour, extra?: Record<string, string>) => TestApp
} {
  let svc: Services | undefined
  const apps: TestApp[] = []
  beforeAll(() => {
    svc = services()
  })
  afterEach(() => {
    for (const a of apps) dropSiteWithoutUpstream(svc!, a)
  })
  afterAll(() => {
    for (const a of apps) removeApp(svc!, a)
  })
  return {
    services: () => svc!,
    newApp(prefix, behaviour, extra = {}) {
      const a = newApp(svc!, prefix, behaviour, extra)
      apps.push(a)
      return a
    }
  }
}

/**
 * Wait until the app's deploy lock is free: a run stops the old color (and prunes images) in the
 * background after it returned, holding the lock until that is done.
 */
export function settled(app: TestApp): void {
  execFileSync('flock', ['-w', '30', path.join(stateDir(app), 'lock'), 'true'])
}

/** Containers of an app: name -> state. */
export function appContainers(app: TestApp): Record<string, string> {
  const out = docker(
    'ps',
    '-a',
    '--filter',
    `label=bg-deploy.app=${app.name}`,
    '--format',
    '{{.Names}} {{.State}}'
  )
  return Object.fromEntries(
    out
      .trim()
      .split('\n')
      .filter(Boolean)
      .map((l) => l.split(' ') as [string, string])
  )
}
