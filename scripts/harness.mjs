// The parts the end-to-end tests, `npm run demo` and `npm run bench` share: the loopback services
// that scripts/services.sh started, the action run the way GitHub runs it, a stand-in for GitHub's
// release API, a sample busybox app, and the load generator. Plain JavaScript so that node runs it
// as it is; the tests import it through __tests__/e2e/helpers.ts.
import { spawn, spawnSync, execFileSync } from 'node:child_process'
import { createServer, request as httpRequest } from 'node:http'
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync
} from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')

/**
 * @typedef {object} Services
 * @property {string} dir
 * @property {string} registry
 * @property {string} sshHost
 * @property {number} sshPort
 * @property {string} sshUser
 * @property {string} sshKey
 * @property {string} sshKeyFile
 * @property {string} fingerprintEd25519
 * @property {string} fingerprintRsa
 * @property {string} hostKeyEd25519
 * @property {string} nginxConf
 * @property {string} nginxConfd
 */

/**
 * A KEY=VALUE file as the set-up scripts write them (services.sh, hosts.sh, swarm.sh).
 * @param {string} file
 * @returns {Record<string, string>}
 */
export function readEnvFile(file) {
  /** @type {Record<string, string>} */
  const env = {}
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const eq = line.indexOf('=')
    if (eq > 0) env[line.slice(0, eq)] = line.slice(eq + 1)
  }
  return env
}

/**
 * The services scripts/services.sh started; a clear error when they are not running.
 * @returns {Services}
 */
export function services() {
  const dir = process.env.BGD_SERVICES_DIR ?? '/tmp/bg-deploy-services'
  const file = path.join(dir, 'env')
  if (!existsSync(file))
    throw new Error(
      `The real services are not running: run 'bash scripts/services.sh up' first (no ${file}).`
    )
  const env = readEnvFile(file)
  const need = (/** @type {string} */ k) => {
    const v = env[k]
    if (v === undefined) throw new Error(`${file} has no ${k}: run 'bash scripts/services.sh up'`)
    return v
  }
  return {
    dir,
    registry: need('BGD_REGISTRY'),
    sshHost: need('BGD_SSH_HOST'),
    sshPort: Number(need('BGD_SSH_PORT')),
    sshUser: need('BGD_SSH_USER'),
    sshKey: readFileSync(need('BGD_SSH_KEY_FILE'), 'utf8'),
    sshKeyFile: need('BGD_SSH_KEY_FILE'),
    fingerprintEd25519: need('BGD_SSH_FINGERPRINT_ED25519'),
    fingerprintRsa: need('BGD_SSH_FINGERPRINT_RSA'),
    hostKeyEd25519: need('BGD_SSH_HOST_KEY_ED25519'),
    nginxConf: need('BGD_NGINX_CONF'),
    nginxConfd: need('BGD_NGINX_CONFD')
  }
}

/**
 * Runs scripts/services.sh up|down, its progress lines indented through `say`; exits the process
 * when it fails (for the demo and the benchmark, which cannot go on without the services).
 * @param {'up' | 'down'} what
 * @param {(line: string) => void} say
 */
export function servicesScript(what, say) {
  const r = spawnSync('bash', [path.join(ROOT, 'scripts/services.sh'), what], {
    stdio: ['ignore', 'inherit', 'pipe'],
    encoding: 'utf8'
  })
  for (const line of (r.stderr ?? '').split('\n').filter(Boolean)) say(`    ${line}`)
  if (r.status !== 0) {
    say(`scripts/services.sh ${what} failed (exit ${r.status}); see the lines above.`)
    process.exit(1)
  }
}

/**
 * The inputs that deploy app `app` to the loopback services: site on `port`, blue and green on the
 * next two ports, image `<registry>/<repository>`, the upstream file in nginx's conf.d.
 * @param {Services} svc
 * @param {{ app: string, repository: string, port: number }} o
 * @returns {Record<string, string>}
 */
export function loopbackInputs(svc, o) {
  return {
    image: `${svc.registry}/${o.repository}`,
    'github-token': 'ghs_not-a-real-token',
    host: svc.sshHost,
    port: String(svc.sshPort),
    username: svc.sshUser,
    'ssh-key': svc.sshKey,
    'host-fingerprint': svc.fingerprintEd25519,
    'app-name': o.app,
    'blue-port': String(o.port + 1),
    'green-port': String(o.port + 2),
    'health-path': '/health',
    'nginx-upstream-file': path.join(svc.nginxConfd, `${o.app}-upstream.conf`),
    'nginx-test-command': `nginx -t -q -c ${svc.nginxConf}`,
    'nginx-reload-command': `nginx -c ${svc.nginxConf} -s reload`
  }
}

/**
 * The nginx site of a loopback app: listens on `port`, proxies to the upstream named `app`.
 * @param {Services} svc
 * @param {string} app
 * @param {number} port
 */
export function writeSite(svc, app, port) {
  writeFileSync(
    path.join(svc.nginxConfd, `${app}-site.conf`),
    `server {\n  listen 127.0.0.1:${port};\n  location / { proxy_pass http://${app}; }\n}\n`
  )
}

/**
 * The `timeline` output of a run as step -> epoch ms.
 * @param {Record<string, string>} outputs
 * @returns {Record<string, number>}
 */
export function timelineOf(outputs) {
  /** @type {Record<string, number>} */
  const t = {}
  for (const e of JSON.parse(outputs.timeline || '[]')) t[e.step] = e.ms
  return t
}

/**
 * Parse a GITHUB_OUTPUT file (`name<<DELIM\nvalue\nDELIM`).
 * @param {string} text
 * @returns {Record<string, string>}
 */
export function parseOutputFile(text) {
  /** @type {Record<string, string>} */
  const out = {}
  const lines = text.split('\n')
  for (let i = 0; i < lines.length; i++) {
    const m = /^([^<]+)<<(.+)$/.exec(lines[i] ?? '')
    if (!m) continue
    const value = []
    for (i++; i < lines.length && lines[i] !== m[2]; i++) value.push(lines[i])
    out[String(m[1])] = value.join('\n')
  }
  return out
}

/**
 * @typedef {object} ActionRun
 * @property {number} code
 * @property {string} log stdout and stderr interleaved as the runner's log shows them
 * @property {Record<string, string>} outputs
 * @property {string} summary
 * @property {number} ms
 * @property {number} startedAt epoch ms when the process was spawned
 */

/**
 * @typedef {object} RunOptions
 * @property {object} [event] the event payload written to GITHUB_EVENT_PATH
 * @property {string} [eventName]
 * @property {string} workspace
 * @property {string} [sha]
 * @property {string} [apiUrl]
 * @property {Record<string, string>} [env]
 * @property {(pid: number) => void} [onSpawn] called with the child's pid once it started
 * @property {(text: string) => void} [onLog] called with every chunk of the log as it comes
 */

/**
 * Run `node dist/index.js` the way the GitHub runner runs a node action.
 * @param {Record<string, string>} inputs
 * @param {RunOptions} opts
 * @returns {Promise<ActionRun>}
 */
export async function runAction(inputs, opts) {
  const tmp = mkdtempSync(path.join(tmpdir(), 'bgd-run-'))
  const eventPath = path.join(tmp, 'event.json')
  const outputPath = path.join(tmp, 'output')
  const summaryPath = path.join(tmp, 'summary.md')
  writeFileSync(eventPath, JSON.stringify(opts.event ?? {}))
  writeFileSync(outputPath, '')
  writeFileSync(summaryPath, '')
  /** @type {Record<string, string>} */
  const env = {
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
  const startedAt = Date.now()
  const child = spawn(process.execPath, [path.join(ROOT, 'dist/index.js')], {
    cwd: opts.workspace,
    env
  })
  if (child.pid) opts.onSpawn?.(child.pid)
  let log = ''
  const take = (/** @type {Buffer} */ d) => {
    log += d
    opts.onLog?.(d.toString())
  }
  child.stdout.on('data', take)
  child.stderr.on('data', take)
  /** @type {number} */
  const code = await new Promise((resolve) =>
    child.on('close', (c, signal) => resolve(c ?? (signal ? 128 : 1)))
  )
  const run = {
    code,
    log,
    outputs: parseOutputFile(readFileSync(outputPath, 'utf8')),
    summary: readFileSync(summaryPath, 'utf8'),
    ms: Date.now() - startedAt,
    startedAt
  }
  rmSync(tmp, { recursive: true, force: true })
  return run
}

/**
 * @typedef {object} ApiRequest
 * @property {string} method
 * @property {string} url
 * @property {Record<string, unknown>} body
 * @property {string} [auth]
 */

/** A loopback stand-in for GitHub's release endpoints, answering as GitHub does. */
export class FakeGitHub {
  /** @type {ApiRequest[]} */
  requests = []
  /** @type {{ id: number, tag_name: string, draft: boolean, html_url: string, name: string, target_commitish: string, prerelease: boolean }[]} */
  releases = []
  /** tags that exist in the repository: name -> commit (a published release makes its tag) */
  /** @type {Record<string, string>} */
  tags = {}
  /** @type {import('node:http').Server | undefined} */
  server = undefined
  url = ''
  /** ms each answer waits, as a round trip to GitHub's API from a runner takes */
  latencyMs = 0
  /** how many of the next requests are answered 502, as GitHub does now and then */
  failNext = 0

  /** @returns {Promise<this>} */
  async start() {
    const server = createServer((req, res) => void this.handle(req, res))
    this.server = server
    await new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(undefined)))
    this.url = `http://127.0.0.1:${/** @type {import('node:net').AddressInfo} */ (server.address()).port}`
    return this
  }

  /** @returns {Promise<void>} */
  stop() {
    return new Promise((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()))
  }

  /**
   * A release as GitHub shows it: a draft has an `untagged-` URL and no tag yet.
   * @param {{ tag_name: string, target_commitish: string, draft?: boolean, prerelease?: boolean }} r
   */
  addRelease(r) {
    const id = this.releases.length + 1
    const release = {
      id,
      tag_name: r.tag_name,
      name: r.tag_name,
      target_commitish: r.target_commitish,
      draft: r.draft ?? false,
      prerelease: r.prerelease ?? false,
      html_url: ''
    }
    this.releases.push(release)
    this.setUrl(release)
    if (!release.draft) this.tags[release.tag_name] = release.target_commitish
    return release
  }

  /** @param {{ id: number, tag_name: string, draft: boolean, html_url: string }} r */
  setUrl(r) {
    r.html_url = r.draft
      ? `https://github.com/acme/shop/releases/tag/untagged-${r.id}`
      : `https://github.com/acme/shop/releases/tag/${r.tag_name}`
  }

  /**
   * @param {import('node:http').IncomingMessage} req
   * @param {import('node:http').ServerResponse} res
   */
  async handle(req, res) {
    let raw = ''
    for await (const chunk of req) raw += chunk
    if (this.latencyMs) await sleep(this.latencyMs)
    /** @type {Record<string, unknown>} */
    const body = raw ? JSON.parse(raw) : {}
    const url = (req.url ?? '').replace(/%2F/gi, '/')
    this.requests.push({ method: req.method ?? '', url, body, auth: req.headers.authorization })
    const send = (
      /** @type {number} */ status,
      /** @type {unknown} */ data,
      /** @type {Record<string, string>} */ headers = {}
    ) => {
      res.writeHead(status, { 'content-type': 'application/json', ...headers })
      res.end(JSON.stringify(data))
    }
    if (this.failNext > 0) {
      this.failNext--
      return send(502, { message: 'Server Error' })
    }
    const notFound = () => send(404, { message: 'Not Found', status: '404' })
    const ref = /^\/repos\/[^/]+\/[^/]+\/git\/ref\/tags\/(.+)$/.exec(url)
    if (req.method === 'GET' && ref) {
      const commit = this.tags[decodeURIComponent(ref[1] ?? '')]
      return commit
        ? send(200, { ref: `refs/tags/${ref[1]}`, object: { type: 'commit', sha: commit } })
        : notFound()
    }
    const byId = /^\/repos\/[^/]+\/[^/]+\/releases\/(\d+)$/.exec(url)
    if (req.method === 'DELETE' && byId) {
      const i = this.releases.findIndex((x) => x.id === Number(byId[1]))
      if (i < 0) return notFound()
      this.releases.splice(i, 1)
      res.writeHead(204)
      return res.end()
    }
    if (req.method === 'PATCH' && byId) {
      const r = this.releases.find((x) => x.id === Number(byId[1]))
      if (!r) return notFound()
      if (body.draft === false && r.draft) {
        r.draft = false
        this.tags[r.tag_name] = r.target_commitish
        this.setUrl(r)
      }
      return send(200, r)
    }
    const list = /^\/repos\/[^/]+\/[^/]+\/releases(\?.*)?$/.exec(url)
    if (list) {
      if (req.method === 'GET') {
        const q = new URLSearchParams((list[1] ?? '').slice(1))
        const per = Number(q.get('per_page') ?? 30)
        const page = Number(q.get('page') ?? 1)
        // GitHub names the next page in a Link header while there is one
        const next = new URL(`${this.url}${url}`)
        next.searchParams.set('page', String(page + 1))
        const more = page * per < this.releases.length
        return send(
          200,
          this.releases.slice((page - 1) * per, page * per),
          more ? { link: `<${next}>; rel="next"` } : {}
        )
      }
      if (req.method === 'POST') {
        if (this.releases.some((x) => x.tag_name === body.tag_name))
          return send(422, {
            message: 'Validation Failed',
            errors: [{ resource: 'Release', code: 'already_exists', field: 'tag_name' }],
            status: '422'
          })
        return send(
          201,
          this.addRelease({
            tag_name: String(body.tag_name),
            target_commitish: String(body.target_commitish),
            draft: body.draft === true,
            prerelease: body.prerelease === true
          })
        )
      }
    }
    notFound()
  }
}

/**
 * Delete every tag of `repository` from the loopback registry (its config enables deletes), so a
 * demo or benchmark that starts again releases its versions anew: a version tag that a run of
 * another commit pushed is never released again (the action deploys it as sha- instead).
 * @param {string} registry
 * @param {string} repository
 */
export async function forgetRepository(registry, repository) {
  const base = `http://${registry}/v2/${repository}`
  const list = await fetch(`${base}/tags/list`)
  if (!list.ok) return
  const tags = /** @type {{ tags: string[] | null }} */ (await list.json()).tags ?? []
  const accept = [
    'application/vnd.docker.distribution.manifest.v2+json',
    'application/vnd.oci.image.manifest.v1+json',
    'application/vnd.oci.image.index.v1+json',
    'application/vnd.docker.distribution.manifest.list.v2+json'
  ].join(', ')
  for (const tag of tags) {
    const head = await fetch(`${base}/manifests/${tag}`, { method: 'HEAD', headers: { accept } })
    const digest = head.headers.get('docker-content-digest')
    if (digest) await fetch(`${base}/manifests/${digest}`, { method: 'DELETE' })
  }
}

/**
 * GET a URL on loopback; resolves to status and body.
 * @param {string} url
 * @param {number} [timeoutMs]
 * @returns {Promise<{ status: number, body: string }>}
 */
export function httpGet(url, timeoutMs = 5000) {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { agent: false, timeout: timeoutMs }, (res) => {
      // decoded once at the end: a character split across two chunks stays whole
      /** @type {Buffer[]} */
      const chunks = []
      res.on('data', (d) => chunks.push(d))
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') })
      )
    })
    req.on('timeout', () => req.destroy(new Error('timeout')))
    req.on('error', reject)
    req.end()
  })
}

/**
 * @typedef {object} AppBehaviour
 * @property {string} version body of / (the version marker)
 * @property {number} [startDelay] seconds before the HTTP server starts listening
 * @property {boolean} [crash] exit right away instead of serving
 * @property {boolean} [neverHealthy] serve /, but answer 404 on the health path
 * @property {string[]} [logLines] lines the app prints to its log when it starts
 * @property {boolean} [sickWithFlag] never healthy where /flag/sick exists in the container (a
 *   volume that one test server holds)
 * @property {{ after: number, inTen: number }} [failsLater] `after` seconds after it started, `/`
 *   answers 500 to `inTen` of every 10 requests (the health path stays fine)
 */

/**
 * The sample app's source: a busybox web server (FROM scratch, no image pull needed) where
 * `/` answers the version, `/health` answers ok, `/cgi-bin/slow` answers after 3 s and
 * `/cgi-bin/env?NAME` prints an environment variable.
 * @param {string} ws
 * @param {AppBehaviour} b
 */
export function writeAppSource(ws, b) {
  mkdirSync(path.join(ws, 'www/cgi-bin'), { recursive: true })
  copyFileSync('/bin/busybox', path.join(ws, 'busybox'))
  rmSync(path.join(ws, 'www/index.html'), { force: true })
  if (b.failsLater)
    // busybox httpd runs cgi-bin/index.cgi for / when there is no index.html
    writeFileSync(
      path.join(ws, 'www/cgi-bin/index.cgi'),
      [
        '#!/bin/sh',
        'n=$(cat /count 2>/dev/null || echo 0); n=$((n + 1)); echo $n > /count',
        `if [ $(( $(date +%s) - $(cat /started) )) -ge ${b.failsLater.after} ] && [ $((n % 10)) -lt ${b.failsLater.inTen} ]; then`,
        `  printf 'HTTP/1.0 500 Internal Server Error\\r\\nContent-Type: text/plain\\r\\n\\r\\n${b.version} failing\\n'`,
        `else printf 'Content-Type: text/plain\\r\\n\\r\\n${b.version}\\n'; fi`,
        ''
      ].join('\n'),
      { mode: 0o755 }
    )
  else {
    rmSync(path.join(ws, 'www/cgi-bin/index.cgi'), { force: true })
    writeFileSync(path.join(ws, 'www/index.html'), `${b.version}\n`)
  }
  writeFileSync(path.join(ws, 'www/health'), 'ok\n')
  const cgi = (/** @type {string} */ name, /** @type {string} */ body) =>
    writeFileSync(path.join(ws, `www/cgi-bin/${name}`), `#!/bin/sh\n${body}\n`, { mode: 0o755 })
  cgi('slow', `sleep 3\nprintf 'Content-Type: text/plain\\r\\n\\r\\n${b.version} slow\\n'`)
  // a long-lived response: a line a second, ?N lines (default 30), unbuffered through nginx
  cgi(
    'stream',
    [
      `printf 'Content-Type: text/plain\\r\\nX-Accel-Buffering: no\\r\\n\\r\\n'`,
      'n="${QUERY_STRING:-30}"; case "$n" in *[!0-9]*|\'\') n=30;; esac',
      `i=0; while [ $i -lt "$n" ]; do echo "${b.version} $i"; sleep 1; i=$((i + 1)); done`
    ].join('\n')
  )
  // busybox-static has no printenv; the name is checked before it reaches eval
  cgi(
    'env',
    [
      `case "$QUERY_STRING" in *[!A-Za-z0-9_]*|'') exit 1;; esac`,
      `printf 'Content-Type: application/octet-stream\\r\\n\\r\\n'`,
      `eval "printf '%s\\n' \\"\\$$QUERY_STRING\\""`
    ].join('\n')
  )
  const say = (b.logLines ?? [])
    .map((l) => `printf '%s\\n' '${l.replace(/'/g, `'\\''`)}'; `)
    .join('')
  const start =
    say +
    (b.crash
      ? 'echo "boom: cannot start" >&2; exit 3'
      : `sleep ${b.startDelay ?? 0}; date +%s > /started; ${b.neverHealthy ? 'rm /www/health; ' : ''}${b.sickWithFlag ? 'if [ -e /flag/sick ]; then rm /www/health; fi; ' : ''}exec httpd -f -p 8080 -h /www`)
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

/**
 * @param {string} ws
 * @param {...string} args
 */
function git(ws, ...args) {
  return execFileSync('git', ['-C', ws, '-c', 'user.name=t', '-c', 'user.email=t@e', ...args], {
    stdio: 'pipe'
  }).toString()
}

/**
 * A git repository holding the sample app at `behaviour`, committed with `commitMessage`.
 * @param {AppBehaviour} behaviour
 * @param {string} [commitMessage]
 * @param {string} [dir] where (default: a new temporary directory)
 * @returns {string} the workspace
 */
export function makeWorkspace(behaviour, commitMessage = 'initial', dir) {
  const ws = dir ?? mkdtempSync(path.join(tmpdir(), 'bgd-ws-'))
  mkdirSync(ws, { recursive: true })
  writeAppSource(ws, behaviour)
  git(ws, 'init', '-q')
  git(ws, 'add', '-A')
  git(ws, 'commit', '-q', '-m', commitMessage)
  return ws
}

/** @param {string} ws */
export function headSha(ws) {
  return git(ws, 'rev-parse', 'HEAD').trim()
}

/** @param {string} ws */
export function headMessage(ws) {
  return git(ws, 'log', '-1', '--format=%B')
}

/**
 * Change the workspace to a new version of the app and commit it as `release <version>`.
 * @param {string} ws
 * @param {AppBehaviour} behaviour
 * @returns {{ event: object, sha: string }} the push event for that commit
 */
export function commitAppVersion(ws, behaviour) {
  writeAppSource(ws, behaviour)
  git(ws, 'commit', '-qam', `release ${behaviour.version}`)
  const sha = headSha(ws)
  return { sha, event: { head_commit: { id: sha, message: `release ${behaviour.version}` } } }
}

/** @param {number} ms */
export function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms))
}

/**
 * The state directory of app `name` on the loopback server: /var/lib/bg-deploy/<name> for root.
 * @param {string} name
 */
export function appStateDir(name) {
  return process.getuid?.() === 0
    ? `/var/lib/bg-deploy/${name}`
    : path.join(process.env.HOME ?? '', `.bg-deploy/${name}`)
}

/**
 * Remove what deploys of app `name` left on the loopback server: its containers, its NAT chain
 * (switch-mode dnat), its nginx site and upstream files, its state directory, and `paths`.
 * @param {Services} svc
 * @param {string} name
 * @param {string[]} [paths]
 */
export function removeApp(svc, name, paths = []) {
  spawnSync('docker', ['rm', '-f', `${name}-blue`, `${name}-green`], { stdio: 'ignore' })
  removeNatChain(name)
  for (const f of [`${name}-site.conf`, `${name}-upstream.conf`])
    rmSync(path.join(svc.nginxConfd, f), { force: true })
  for (const p of [appStateDir(name), ...paths]) rmSync(p, { recursive: true, force: true })
}

/**
 * Remove what switch-mode dnat left for `app`: its chain in the nat table and the jump to it.
 * @param {string} app
 */
export function removeNatChain(app) {
  spawnSync(
    'bash',
    [
      '-c',
      'iptables -w -t nat -S OUTPUT 2>/dev/null | grep -- "-j $1\\$" | sed "s/^-A/-D/" | while read -r r; do iptables -w -t nat $r; done; iptables -w -t nat -F "$1"; iptables -w -t nat -X "$1"',
      '_',
      `BGD-${app}`
    ],
    { stdio: 'ignore' }
  )
}

/** @param {...string} args */
export function docker(...args) {
  return execFileSync('docker', args, { stdio: ['ignore', 'pipe', 'pipe'] }).toString()
}

/**
 * @typedef {object} LoadStats
 * @property {number} requests
 * @property {number} ok
 * @property {number} non2xx
 * @property {number} errors
 * @property {number} races
 * @property {number} slowStarted
 * @property {number} slowCompleted
 * @property {number} slowFailed
 * @property {unknown[]} failures
 * @property {{ keepalive: number, fresh: number, slow: number }} errorsByKind
 * @property {Record<string, { count: number, first: number, last: number }>} versions
 * @property {Record<string, number>} statuses
 * @property {number} ms
 * @property {number} t0 epoch ms the times above count from
 * @property {number} bucketMs width of a timeline bucket
 * @property {[number, Record<string, number>][]} timeline [ms since t0, {version or 'failed': count}]
 */

/** scripts/load.mjs in its own process, so the caller's own work does not slow the clients. */
export class Load {
  /** @type {import('node:child_process').ChildProcessWithoutNullStreams | undefined} */
  child = undefined
  out = ''
  /** epoch ms of the load generator's clock zero */
  startedAt = 0

  /**
   * @param {string} url
   * @param {{ keepalive?: number, fresh?: number, slow?: number, seconds?: number }} [opts]
   * @returns {Promise<this>}
   */
  async start(url, opts = {}) {
    const child = spawn(process.execPath, [
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
      String(opts.seconds ?? 300)
    ])
    this.child = child
    child.stdout.on('data', (d) => (this.out += d))
    child.stderr.on('data', (d) => process.stderr.write(d))
    while (!this.out.includes('"started"')) await sleep(20)
    this.startedAt = JSON.parse(this.out.split('\n')[0] ?? '{}').t0
    return this
  }

  /** @returns {Promise<LoadStats>} */
  async stop() {
    const child = this.child
    if (!child) throw new Error('load generator not started')
    const closed = new Promise((r) => child.on('close', r))
    child.kill('SIGTERM')
    await closed
    const lines = this.out.trim().split('\n')
    return JSON.parse(lines[lines.length - 1] ?? '{}')
  }
}

/**
 * Epoch ms of the first timeline bucket at or after `fromEpoch` in which `version` was served.
 * @param {LoadStats} stats
 * @param {string} version
 * @param {number} fromEpoch
 * @returns {number} NaN when it never was
 */
export function firstServed(stats, version, fromEpoch) {
  for (const [t, counts] of stats.timeline)
    if (stats.t0 + t + stats.bucketMs > fromEpoch && counts[version]) return stats.t0 + t
  return NaN
}

/**
 * Epoch ms of the end of the last timeline bucket (starting before `beforeEpoch`) in which
 * `version` was served.
 * @param {LoadStats} stats
 * @param {string} version
 * @param {number} [beforeEpoch]
 * @returns {number} NaN when it never was
 */
export function lastServed(stats, version, beforeEpoch = Infinity) {
  let last = NaN
  for (const [t, counts] of stats.timeline)
    if (counts[version] && stats.t0 + t < beforeEpoch) last = stats.t0 + t + stats.bucketMs
  return last
}

/**
 * @typedef {object} TestServer
 * @property {string} name h1, h2, … or lb
 * @property {string} address its address on the test network (198.18.0.0/15)
 * @property {string} fingerprint its host key fingerprint, as ssh-keygen -lf prints it
 * @property {string} dir its directory: state/, nginx/, docker.sock, sshd.pid
 * @property {string} [docker] its Docker engine's socket (not on the load balancer)
 */

/**
 * The servers scripts/hosts.sh started: app servers h1…hN and the load balancer lb. On each one,
 * /srv/bgd-nginx is its nginx directory (nginx.conf, conf.d/) and /var/lib/bg-deploy its state.
 * @param {Services} svc
 * @returns {{ apps: TestServer[], lb: TestServer }}
 */
export function testServers(svc) {
  const dir = path.join(svc.dir, 'hosts')
  const file = path.join(dir, 'hosts.env')
  if (!existsSync(file))
    throw new Error(
      `The test servers are not running: run 'bash scripts/hosts.sh up' (no ${file}).`
    )
  const env = readEnvFile(file)
  const server = (/** @type {string} */ name) => ({
    name,
    address: env[`BGD_HOST_${name.toUpperCase()}`] ?? '',
    fingerprint: env[`BGD_HOST_${name.toUpperCase()}_FINGERPRINT`] ?? '',
    dir: path.join(dir, name),
    docker: name === 'lb' ? undefined : `unix://${path.join(dir, name, 'docker.sock')}`
  })
  return { apps: (env.BGD_HOSTS ?? '').split(' ').filter(Boolean).map(server), lb: server('lb') }
}

/**
 * Runs scripts/hosts.sh up|down.
 * @param {'up' | 'down'} what
 * @param {number} [n] app servers
 */
export function hostsScript(what, n = 3) {
  const r = spawnSync('bash', [path.join(ROOT, 'scripts/hosts.sh'), what, String(n)], {
    stdio: ['ignore', 'pipe', 'pipe'],
    encoding: 'utf8'
  })
  if (r.status !== 0) throw new Error(`scripts/hosts.sh ${what} failed: ${r.stderr}`)
}

/** Where a session on a test server sees that server's own nginx directory (scripts/hosts.sh). */
export const SERVER_NGINX = '/srv/bgd-nginx'

/**
 * An app on the test servers of scripts/hosts.sh: its nginx sites (on the load balancer for shape
 * 'lb', on every app server for 'each'), listening on `port` and including the preview routes, and
 * the inputs that deploy it there (blue and green on the next two ports).
 * @param {Services} svc
 * @param {{ apps: TestServer[], lb: TestServer }} servers
 * @param {{ app: string, repository: string, port: number, shape: 'lb' | 'each', hosts?: number }} o
 * @returns {{ inputs: Record<string, string>, urls: string[], fronts: TestServer[], apps: TestServer[] }}
 */
export function fleetSetup(svc, servers, o) {
  const apps = servers.apps.slice(0, o.hosts ?? servers.apps.length)
  const fronts = o.shape === 'lb' ? [servers.lb] : apps
  // nginx itself sees its directory at its real path; sessions see it at SERVER_NGINX
  for (const s of fronts)
    writeFileSync(
      path.join(s.dir, 'nginx/conf.d', `${o.app}-site.conf`),
      `server {\n  listen ${s.address}:${o.port};\n  location / { proxy_pass http://${o.app}; }\n  include ${s.dir}/nginx/conf.d/${o.app}-preview*.inc;\n}\n`
    )
  return {
    apps,
    fronts,
    urls: fronts.map((s) => `http://${s.address}:${o.port}/`),
    inputs: {
      image: `${svc.registry}/${o.repository}`,
      'create-release': 'false',
      ...(apps.length === 1
        ? { host: apps[0]?.address ?? '' }
        : { hosts: apps.map((s) => s.address).join('\n') }),
      ...(o.shape === 'lb' ? { 'lb-host': servers.lb.address, 'bind-address': '0.0.0.0' } : {}),
      username: 'root',
      'ssh-key': svc.sshKey,
      'host-fingerprint': [...apps, servers.lb].map((s) => s.fingerprint).join('\n'),
      'app-name': o.app,
      'blue-port': String(o.port + 1),
      'green-port': String(o.port + 2),
      'health-path': '/health',
      'nginx-upstream-file': `${SERVER_NGINX}/conf.d/${o.app}-upstream.conf`,
      'nginx-test-command': `nginx -t -q -c ${SERVER_NGINX}/nginx.conf`,
      'nginx-reload-command': `nginx -c ${SERVER_NGINX}/nginx.conf -s reload`
    }
  }
}

// The single-node swarm of scripts/swarm.sh: the script, its settings, a site, the inputs.

/** @param {'up' | 'down' | 'reload'} what */
export function swarmScript(what) {
  const r = spawnSync('bash', [path.join(ROOT, 'scripts/swarm.sh'), what], { encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`scripts/swarm.sh ${what} failed: ${r.stderr}`)
}

/**
 * The settings scripts/swarm.sh wrote.
 * @param {import('./harness.mjs').Services} svc
 * @returns {Record<string, string>}
 */
export function swarmEnv(svc) {
  return readEnvFile(path.join(svc.dir, 'swarm/swarm.env'))
}

/**
 * nginx's site for a Swarm app, in the front container on the overlay network, then reloaded.
 * @param {Record<string, string>} env
 * @param {string} app
 * @param {number} port one of 18200-18209
 */
export function swarmSite(env, app, port) {
  writeFileSync(
    path.join(env.BGD_SWARM_FRONT ?? '', 'conf.d', `${app}.conf`),
    `server {\n  listen ${port};\n  location / {\n    set $tasks tasks.${app};\n    proxy_pass http://$tasks:8080;\n    proxy_next_upstream error timeout http_502 http_503;\n  }\n}\n`
  )
  swarmScript('reload')
}

/**
 * The inputs that deploy `app` to the swarm.
 * @param {import('./harness.mjs').Services} svc
 * @param {Record<string, string>} env
 * @param {{ app: string, repository: string }} o
 */
export function swarmInputs(svc, env, o) {
  return {
    image: `${svc.registry}/${o.repository}`,
    'create-release': 'false',
    engine: 'swarm',
    host: env.BGD_SWARM_HOST ?? '',
    username: 'root',
    'ssh-key': svc.sshKey,
    'host-fingerprint': env.BGD_SWARM_FINGERPRINT ?? '',
    'app-name': o.app,
    replicas: '2',
    network: env.BGD_SWARM_NETWORK ?? '',
    'health-cmd': "printf 'GET /health HTTP/1.0\\r\\n\\r\\n' | nc 127.0.0.1 8080 | grep -q ' 200 '",
    'health-interval': '1',
    'health-timeout': '10',
    'drain-timeout': '10',
    watch: '3'
  }
}
