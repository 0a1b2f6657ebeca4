// Shared fixture for end-to-end tests: the real services started by scripts/services.sh,
// the action run as GitHub runs it, a stand-in for GitHub's release API, and sample apps.
import { spawn, execFileSync } from 'node:child_process'
import { createServer, request as httpRequest, type IncomingMessage, type Server } from 'node:http'
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  writeFileSync,
  copyFileSync,
  rmSync
} from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import type { AddressInfo } from 'node:net'

export const ROOT = path.resolve(
  import.meta.dirname ?? path.dirname(new URL(import.meta.url).pathname),
  '../..'
)

export interface Services {
  dir: string
  registry: string
  sshHost: string
  sshPort: number
  sshUser: string
  sshKey: string
  fingerprintEd25519: string
  fingerprintRsa: string
  hostKeyEd25519: string
  nginxConf: string
  nginxConfd: string
}

/** The services scripts/services.sh started; a clear error when they are not running. */
export function services(): Services {
  const dir = process.env.BGD_SERVICES_DIR ?? '/tmp/bg-deploy-services'
  const file = path.join(dir, 'env')
  if (!existsSync(file))
    throw new Error(
      `End-to-end tests need the real services: run 'bash scripts/services.sh up' first (no ${file}).`
    )
  const env: Record<string, string> = {}
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const eq = line.indexOf('=')
    if (eq > 0) env[line.slice(0, eq)] = line.slice(eq + 1)
  }
  return {
    dir,
    registry: env.BGD_REGISTRY!,
    sshHost: env.BGD_SSH_HOST!,
    sshPort: Number(env.BGD_SSH_PORT),
    sshUser: env.BGD_SSH_USER!,
    sshKey: readFileSync(env.BGD_SSH_KEY_FILE!, 'utf8'),
    fingerprintEd25519: env.BGD_SSH_FINGERPRINT_ED25519!,
    fingerprintRsa: env.BGD_SSH_FINGERPRINT_RSA!,
    hostKeyEd25519: env.BGD_SSH_HOST_KEY_ED25519!,
    nginxConf: env.BGD_NGINX_CONF!,
    nginxConfd: env.BGD_NGINX_CONFD!
  }
}

export interface ActionRun {
  code: number
  /** stdout and stderr interleaved as the runner's log shows them */
  log: string
  outputs: Record<string, string>
  summary: string
  ms: number
}

/** Parse a GITHUB_OUTPUT file (`name<<DELIM\nvalue\nDELIM`). */
export function parseOutputFile(text: string): Record<string, string> {
  const out: Record<string, string> = {}
  const lines = text.split('\n')
  for (let i = 0; i < lines.length; i++) {
    const m = /^([^<]+)<<(.+)$/.exec(lines[i]!)
    if (!m) continue
    const value: string[] = []
    for (i++; i < lines.length && lines[i] !== m[2]; i++) value.push(lines[i]!)
    out[m[1]!] = value.join('\n')
  }
  return out
}

export interface RunOptions {
  /** the event payload written to GITHUB_EVENT_PATH */
  event?: object
  eventName?: string
  workspace: string
  sha?: string
  apiUrl?: string
  env?: Record<string, string>
  /** called with the child process once it started (to kill it mid-run) */
  onSpawn?: (pid: number) => void
}

/** Run `node dist/index.js` the way the GitHub runner runs a node action. */
export async function runAction(
  inputs: Record<string, string>,
  opts: RunOptions
): Promise<ActionRun> {
  const tmp = mkdtempSync(path.join(tmpdir(), 'bgd-run-'))
  const eventPath = path.join(tmp, 'event.json')
  const outputPath = path.join(tmp, 'output')
  const summaryPath = path.join(tmp, 'summary.md')
  writeFileSync(eventPath, JSON.stringify(opts.event ?? {}))
  writeFileSync(outputPath, '')
  writeFileSync(summaryPath, '')
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: process.env.HOME ?? '/root',
    GITHUB_ACTIONS: 'true',
    CI: 'true',
    GITHUB_EVENT_NAME: opts.eventName ?? 'push',
    GITHUB_EVENT_PATH: eventPath,
    GITHUB_OUTPUT: outputPath,
    GITHUB_STEP_SUMMARY: summaryPath,
    GITHUB_SHA: opts.sha ?? 'f00dfeedf00dfeedf00dfeedf00dfeedf00dfeed',
    GITHUB_REF: 'refs/heads/main',
    GITHUB_REPOSITORY: 'acme/shop',
    GITHUB_REPOSITORY_OWNER: 'acme',
    GITHUB_ACTOR: 'octocat',
    GITHUB_RUN_ID: '4242',
    GITHUB_RUN_ATTEMPT: '1',
    GITHUB_WORKFLOW: 'deploy',
    GITHUB_SERVER_URL: 'https://github.com',
    GITHUB_API_URL: opts.apiUrl ?? 'http://127.0.0.1:9',
    GITHUB_WORKSPACE: opts.workspace,
    RUNNER_TEMP: tmp,
    ...opts.env
  }
  // GitHub passes each input as INPUT_<NAME uppercased, spaces as _>; hyphens stay.
  for (const [name, value] of Object.entries(inputs))
    env[`INPUT_${name.replace(/ /g, '_').toUpperCase()}`] = value
  const started = Date.now()
  const child = spawn(process.execPath, [path.join(ROOT, 'dist/index.js')], {
    cwd: opts.workspace,
    env
  })
  if (child.pid) opts.onSpawn?.(child.pid)
  let log = ''
  child.stdout.on('data', (d) => (log += d))
  child.stderr.on('data', (d) => (log += d))
  const code = await new Promise<number>((resolve) =>
    child.on('close', (c, signal) => resolve(c ?? (signal ? 128 : 1)))
  )
  const run = {
    code,
    log,
    outputs: parseOutputFile(readFileSync(outputPath, 'utf8')),
    summary: readFileSync(summaryPath, 'utf8'),
    ms: Date.now() - started
  }
  rmSync(tmp, { recursive: true, force: true })
  return run
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

/** Fail with the whole log when a run did not exit 0. */
export function expectOk(run: ActionRun): void {
  if (run.code !== 0) throw new Error(`action exited ${run.code}; log:\n${run.log}`)
}

export interface ApiRequest {
  method: string
  url: string
  body: Record<string, unknown>
  auth?: string
}

/** A loopback stand-in for GitHub's release endpoints, answering as GitHub does. */
export class FakeGitHub {
  requests: ApiRequest[] = []
  releases: { id: number; tag_name: string; draft: boolean; html_url: string; name: string }[] = []
  private server?: Server
  url = ''

  async start(): Promise<this> {
    this.server = createServer((req, res) => void this.handle(req, res))
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve))
    this.url = `http://127.0.0.1:${(this.server!.address() as AddressInfo).port}`
    return this
  }

  stop(): Promise<void> {
    return new Promise((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()))
  }

  private async handle(
    req: IncomingMessage,
    res: import('node:http').ServerResponse
  ): Promise<void> {
    let raw = ''
    for await (const chunk of req) raw += chunk
    const body = raw ? (JSON.parse(raw) as Record<string, unknown>) : {}
    this.requests.push({
      method: req.method!,
      url: req.url!,
      body,
      auth: req.headers.authorization
    })
    const send = (status: number, data: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' })
      res.end(JSON.stringify(data))
    }
    const byTag = /^\/repos\/([^/]+)\/([^/]+)\/releases\/tags\/(.+)$/.exec(req.url!)
    if (req.method === 'GET' && byTag) {
      const r = this.releases.find((x) => x.tag_name === decodeURIComponent(byTag[3]!) && !x.draft)
      return r ? send(200, r) : send(404, { message: 'Not Found', status: '404' })
    }
    if (/^\/repos\/[^/]+\/[^/]+\/releases(\?.*)?$/.test(req.url!)) {
      if (req.method === 'GET') return send(200, this.releases)
      if (req.method === 'POST') {
        if (this.releases.some((x) => x.tag_name === body.tag_name))
          return send(422, {
            message: 'Validation Failed',
            errors: [{ resource: 'Release', code: 'already_exists', field: 'tag_name' }],
            status: '422'
          })
        const r = {
          id: this.releases.length + 1,
          tag_name: String(body.tag_name),
          name: String(body.name),
          draft: false,
          html_url: `https://github.com/acme/shop/releases/tag/${String(body.tag_name)}`
        }
        this.releases.push(r)
        return send(201, r)
      }
    }
    send(404, { message: 'Not Found' })
  }
}

/** GET a URL on loopback; resolves to status and body. */
export function httpGet(url: string, timeoutMs = 5000): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { agent: false, timeout: timeoutMs }, (res) => {
      let body = ''
      res.on('data', (d) => (body += d))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
    })
    req.on('timeout', () => req.destroy(new Error('timeout')))
    req.on('error', reject)
    req.end()
  })
}

/** Tags of a repository in the loopback registry ([] when it has none). */
export async function registryTags(registry: string, repository: string): Promise<string[]> {
  const r = await httpGet(`http://${registry}/v2/${repository}/tags/list`)
  if (r.status === 404) return []
  return ((JSON.parse(r.body) as { tags: string[] | null }).tags ?? []).sort()
}

export interface AppBehaviour {
  /** body of / (the version marker) */
  version: string
  /** seconds before the HTTP server starts listening */
  startDelay?: number
  /** exit right away instead of serving */
  crash?: boolean
  /** serve /, but answer 500 on the health path */
  neverHealthy?: boolean
}

/**
 * A workspace holding a git repository with a Dockerfile for a busybox web app:
 * `/` answers the version, `/cgi-bin/slow` answers after 3 s, `/cgi-bin/env?NAME` prints an env var.
 */
export function makeWorkspace(behaviour: AppBehaviour, commitMessage = 'initial'): string {
  const ws = mkdtempSync(path.join(tmpdir(), 'bgd-ws-'))
  writeAppSource(ws, behaviour)
  const git = (...args: string[]) =>
    execFileSync('git', ['-C', ws, '-c', 'user.name=t', '-c', 'user.email=t@e', ...args], {
      stdio: 'pipe'
    })
  git('init', '-q')
  git('add', '-A')
  git('commit', '-q', '-m', commitMessage)
  return ws
}

export function headSha(ws: string): string {
  return execFileSync('git', ['-C', ws, 'rev-parse', 'HEAD']).toString().trim()
}

export function writeAppSource(ws: string, b: AppBehaviour): void {
  mkdirSync(path.join(ws, 'www/cgi-bin'), { recursive: true })
  copyFileSync('/bin/busybox', path.join(ws, 'busybox'))
  writeFileSync(path.join(ws, 'www/index.html'), `${b.version}\n`)
  writeFileSync(path.join(ws, 'www/health'), 'ok\n')
  const cgi = (name: string, body: string) =>
    writeFileSync(path.join(ws, `www/cgi-bin/${name}`), `#!/bin/sh\n${body}\n`, { mode: 0o755 })
  cgi('slow', `sleep 3\nprintf 'Content-Type: text/plain\\r\\n\\r\\n${b.version} slow\\n'`)
  // busybox-static has no printenv; the name is checked before it reaches eval
  cgi(
    'env',
    [
      `case "$QUERY_STRING" in *[!A-Za-z0-9_]*|'') exit 1;; esac`,
      `printf 'Content-Type: application/octet-stream\\r\\n\\r\\n'`,
      `eval "printf '%s\\n' \\"\\$$QUERY_STRING\\""`
    ].join('\n')
  )
  const start = b.crash
    ? 'echo "boom: cannot start" >&2; exit 3'
    : `sleep ${b.startDelay ?? 0}; ${b.neverHealthy ? 'rm /www/health; ' : ''}exec httpd -f -p 8080 -h /www`
  writeFileSync(path.join(ws, 'start.sh'), `#!/bin/sh\n${start}\n`, { mode: 0o755 })
  writeFileSync(
    path.join(ws, 'Dockerfile'),
    [
      'FROM scratch',
      'COPY busybox /bin/busybox',
      'RUN ["/bin/busybox", "--install", "-s", "/bin"]',
      'COPY www /www',
      'COPY start.sh /start.sh',
      'CMD ["/start.sh"]',
      ''
    ].join('\n')
  )
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms))
}

export function docker(...args: string[]): string {
  return execFileSync('docker', args, { stdio: ['ignore', 'pipe', 'pipe'] }).toString()
}

export interface LoadStats {
  requests: number
  ok: number
  non2xx: number
  errors: number
  races: number
  slowStarted: number
  slowCompleted: number
  slowFailed: number
  failures: unknown[]
  versions: Record<string, { count: number; first: number; last: number }>
  statuses: Record<string, number>
  ms: number
}

/** scripts/load.mjs in its own process, so the test's own work does not slow the clients. */
export class Load {
  private child?: import('node:child_process').ChildProcessWithoutNullStreams
  private out = ''
  startedAt = 0

  async start(
    url: string,
    opts: { keepalive?: number; fresh?: number; slow?: number } = {}
  ): Promise<this> {
    this.child = spawn(process.execPath, [
      path.join(ROOT, 'scripts/load.mjs'),
      '--url',
      url,
      '--keepalive',
      String(opts.keepalive ?? 16),
      '--fresh',
      String(opts.fresh ?? 4),
      '--slow',
      String(opts.slow ?? 2),
      '--seconds',
      '300'
    ])
    this.child.stdout.on('data', (d) => (this.out += d))
    this.child.stderr.on('data', (d) => process.stderr.write(d))
    while (!this.out.includes('"started"')) await sleep(20)
    this.startedAt = Date.now()
    return this
  }

  async stop(): Promise<LoadStats> {
    const child = this.child!
    const closed = new Promise((r) => child.on('close', r))
    child.kill('SIGTERM')
    await closed
    const lines = this.out.trim().split('\n')
    return JSON.parse(lines[lines.length - 1]!) as LoadStats
  }
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
  writeAppSource(app.ws, behaviour)
  execFileSync('git', [
    '-C',
    app.ws,
    '-c',
    'user.name=t',
    '-c',
    'user.email=t@e',
    'commit',
    '-qam',
    `release ${behaviour.version}`
  ])
  const sha = headSha(app.ws)
  return { sha, event: { head_commit: { id: sha, message: `release ${behaviour.version}` } } }
}

/** Deploy the version currently committed in the app's workspace. */
export function deployApp(
  app: TestApp,
  opts: Partial<RunOptions> & { inputs?: Record<string, string> } = {}
): Promise<ActionRun> {
  const sha = headSha(app.ws)
  const message = execFileSync('git', ['-C', app.ws, 'log', '-1', '--format=%B']).toString()
  return runAction(
    { ...app.inputs, ...opts.inputs },
    { workspace: app.ws, sha, event: { head_commit: { id: sha, message } }, ...opts }
  )
}

/** Remove everything an app left: containers, its nginx files (and reload), its state. */
export function removeApp(svc: Services, app: TestApp): void {
  for (const c of ['blue', 'green']) {
    try {
      docker('rm', '-f', `${app.name}-${c}`)
    } catch {
      /* not there */
    }
  }
  rmSync(path.join(svc.nginxConfd, `${app.name}-site.conf`), { force: true })
  rmSync(path.join(svc.nginxConfd, `${app.name}-upstream.conf`), { force: true })
  rmSync(path.join(svc.dir, 'port-slots', String((app.lbPort - 20000) / 10)), {
    recursive: true,
    force: true
  })
  rmSync(`/var/lib/bg-deploy/${app.name}`, { recursive: true, force: true })
  rmSync(app.ws, { recursive: true, force: true })
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
