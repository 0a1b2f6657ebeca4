// The command line (`npx bg-deploy`, bin/bg-deploy.mjs) against the real services: deploy from a
// working copy under load, status, and a rollback, with the action's inputs as flags, the key in a
// file and no GitHub at all.
import { execFileSync, spawn } from 'node:child_process'
import { createServer } from 'node:net'
import { existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import {
  Load,
  appFixture,
  commitVersion,
  deployApp,
  expectOk,
  httpGet,
  settled,
  type TestApp
} from './helpers.js'

const fixture = appFixture()
beforeAll(() => fixture.services())

const bin = path.resolve('bin/bg-deploy.mjs')

/** Run the command line in the app's working copy; the key in a file, the rest as flags. */
function bgDeploy(
  a: TestApp,
  args: string[],
  env: Record<string, string> = {}
): Promise<{ code: number | null; out: string }> {
  const keyFile = path.join(mkdtempSync(path.join(tmpdir(), 'bgd-cli-')), 'key')
  writeFileSync(keyFile, a.inputs['ssh-key']!, { mode: 0o600 })
  const flags = Object.entries(a.inputs)
    .filter(([k]) => !['ssh-key', 'github-token', 'create-release'].includes(k))
    .flatMap(([k, v]) => [`--${k}`, v])
  // no GitHub Actions variables: the command line needs none
  const clean = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !/^(GITHUB_|RUNNER_|INPUT_)/.test(k))
  )
  return new Promise((resolve) => {
    const p = spawn(
      'node',
      [bin, ...args, ...flags, '--ssh-key', `@${keyFile}`, '--create-release', 'false'],
      { cwd: a.ws, env: { ...clean, ...env } }
    )
    let out = ''
    p.stdout.on('data', (d: Buffer) => (out += d.toString()))
    p.stderr.on('data', (d: Buffer) => (out += d.toString()))
    p.on('close', (code) => resolve({ code, out }))
  })
}

test('bg-deploy deploy, status and rollback from a terminal: the same deploy, 0 failed requests', async () => {
  const a = fixture.newApp('cli', { version: 'v1.0.0' })
  expectOk(await deployApp(a))
  settled(a)
  commitVersion(a, { version: 'v2.0.0' })

  const load = await new Load().start(a.url)
  const deployed = await bgDeploy(a, ['deploy'])
  const stats = await load.stop()
  if (deployed.code !== 0)
    throw new Error(`bg-deploy deploy exited ${deployed.code}:\n${deployed.out}`)
  expect(deployed.out).toMatch(/^version: v2\.0\.0$/m)
  expect(deployed.out).toMatch(/^deployed: true$/m)
  expect(deployed.out).toMatch(/^== 127\.0\.0\.1: pull$/m)
  // a terminal gets no workflow commands, and never the key
  expect(deployed.out).not.toMatch(/^::/m)
  expect(deployed.out).not.toContain('PRIVATE KEY')
  expect(stats.non2xx + stats.errors).toBe(0)
  expect((await httpGet(a.url)).body).toBe('v2.0.0\n')
  settled(a)

  const status = await bgDeploy(a, ['status'])
  expect(status.code).toBe(0)
  expect(status.out).toContain(`127.0.0.1:${a.inputs.port}: ${a.name} serves v2.0.0 (green)`)
  expect(status.out).toMatch(/deploy v2\.0\.0 {2}ok {2}green {2}by /)

  // the rollback, with the key from BG_DEPLOY_SSH_KEY instead of a flag
  const back = await bgDeploy(a, ['rollback'], { BG_DEPLOY_SSH_KEY: a.inputs['ssh-key']! })
  expect(back.code).toBe(0)
  expect(back.out).toMatch(/^version: v1\.0\.0$/m)
  expect((await httpGet(a.url)).body).toBe('v1.0.0\n')
  settled(a)
  const after = await bgDeploy(a, ['status'])
  expect(after.out).toContain(`${a.name} serves v1.0.0 (blue)`)
  expect(after.out).toMatch(/rollback v1\.0\.0 {2}ok {2}blue {2}by \S+\n.*deploy v2\.0\.0 {2}ok/)
}, 240_000)

test('a mistake on the command line is refused with the usage, before anything runs', async () => {
  const a = fixture.newApp('clibad', { version: 'v1.0.0' })
  const r = await bgDeploy(a, ['deploy', '--no-such-input', 'x'])
  expect(r.code).toBe(2)
  expect(r.out).toContain('Unknown flag --no-such-input')
  expect(r.out).toContain('Usage: bg-deploy <command>')
}, 60_000)

test('deploy refuses a working tree with uncommitted changes, before anything is built or changed', async () => {
  const a = fixture.newApp('clidirty', { version: 'v1.0.0' })
  writeFileSync(path.join(a.ws, 'www/index.html'), 'not committed\n')
  const r = await bgDeploy(a, ['deploy'])
  expect(r.code).toBe(1)
  expect(r.out).toMatch(/the working tree has 1 uncommitted change\(s\) \(www\/index\.html\)/)
  expect(r.out).not.toMatch(/Build |Connected to/)
}, 60_000)

test("status with the user's own ssh: the ssh-agent's key and ~/.ssh/known_hosts, no key or fingerprint flag; --json prints one object on stdout", async () => {
  const a = fixture.newApp('cliagent', { version: 'v1.0.0' })
  expectOk(await deployApp(a))
  settled(a)
  const home = mkdtempSync(path.join(tmpdir(), 'bgd-home-'))
  mkdirSync(path.join(home, '.ssh'), { mode: 0o700 })
  const port = a.inputs.port ?? '22'
  writeFileSync(
    path.join(home, '.ssh/known_hosts'),
    execFileSync('ssh-keyscan', ['-p', port, '-t', 'ed25519', '127.0.0.1'], {
      stdio: ['ignore', 'pipe', 'ignore']
    })
  )
  const keyFile = path.join(home, 'key')
  writeFileSync(keyFile, a.inputs['ssh-key']!, { mode: 0o600 })
  const sock = path.join(home, 'agent.sock')
  const agent = spawn('ssh-agent', ['-D', '-a', sock], { stdio: 'ignore' })
  try {
    for (let i = 0; i < 50 && !existsSync(sock); i++) await new Promise((r) => setTimeout(r, 100))
    execFileSync('ssh-add', [keyFile], { env: { SSH_AUTH_SOCK: sock }, stdio: 'ignore' })
    const flags = Object.entries(a.inputs)
      .filter(
        ([k]) =>
          ![
            'ssh-key',
            'host-fingerprint',
            'insecure-ignore-host-key',
            'github-token',
            'create-release'
          ].includes(k)
      )
      .flatMap(([k, v]) => [`--${k}`, v])
    const clean = Object.fromEntries(
      Object.entries(process.env).filter(
        ([k]) => !/^(GITHUB_|RUNNER_|INPUT_|SSH_AUTH_SOCK)/.test(k)
      )
    )
    const run = (env: Record<string, string>) =>
      new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
        const p = spawn('node', [bin, 'status', '--json', ...flags], {
          cwd: a.ws,
          env: { ...clean, HOME: home, ...env }
        })
        let out = ''
        let err = ''
        p.stdout.on('data', (d: Buffer) => (out += d.toString()))
        p.stderr.on('data', (d: Buffer) => (err += d.toString()))
        p.on('close', (code) => resolve({ code, out, err }))
      })
    const r = await run({ SSH_AUTH_SOCK: sock })
    if (r.code !== 0) throw new Error(`status exited ${r.code}:\n${r.out}\n${r.err}`)
    expect(r.err).toContain('host keys: checked against ~/.ssh/known_hosts')
    expect(r.err).toContain('the keys of your ssh-agent')
    const result = JSON.parse(r.out) as {
      app: string
      servers: { serving?: { version: string } }[]
    }
    expect(result.app).toBe(a.name)
    expect(result.servers[0]?.serving?.version).toBe('v1.0.0')
    // a known_hosts without this server: refused before connecting, naming the fix
    writeFileSync(
      path.join(home, '.ssh/known_hosts'),
      'other.example ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n'
    )
    const unknown = await run({ SSH_AUTH_SOCK: sock })
    expect(unknown.code).toBe(1)
    expect(unknown.err).toMatch(/has no entry for \[127\.0\.0\.1\]:\d+/)
    // the agent without the key: refused by the server, with what to do
    execFileSync('ssh-add', ['-D'], { env: { SSH_AUTH_SOCK: sock }, stdio: 'ignore' })
    writeFileSync(
      path.join(home, '.ssh/known_hosts'),
      execFileSync('ssh-keyscan', ['-p', port, '-t', 'ed25519', '127.0.0.1'], {
        stdio: ['ignore', 'pipe', 'ignore']
      })
    )
    const refused = await run({ SSH_AUTH_SOCK: sock })
    expect(refused.code).toBe(1)
    expect(refused.err).toMatch(/refused every key of your ssh-agent/)
  } finally {
    agent.kill()
  }
}, 120_000)

test('bg-deploy check: a server set up as the docs say is ready; each setup step broken on purpose is a FAIL line naming the fix, and exit 1', async () => {
  const a = fixture.newApp('clicheck', { version: 'v1.0.0' })
  const keyFile = path.join(mkdtempSync(path.join(tmpdir(), 'bgd-cli-')), 'key')
  writeFileSync(keyFile, a.inputs['ssh-key']!, { mode: 0o600 })
  const clean = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !/^(GITHUB_|RUNNER_|INPUT_|SSH_AUTH_SOCK)/.test(k))
  )
  // no image: check (like status) only reads the servers
  const check = (over: Record<string, string> = {}) =>
    new Promise<{ code: number | null; out: string }>((resolve) => {
      const flags = Object.entries({ ...a.inputs, ...over })
        .filter(([k]) => !['ssh-key', 'github-token', 'create-release', 'image'].includes(k))
        .flatMap(([k, v]) => [`--${k}`, v])
      const p = spawn('node', [bin, 'check', ...flags, '--ssh-key', `@${keyFile}`], {
        cwd: a.ws,
        env: clean
      })
      let out = ''
      p.stdout.on('data', (d: Buffer) => (out += d.toString()))
      p.stderr.on('data', (d: Buffer) => (out += d.toString()))
      p.on('close', (code) => resolve({ code, out }))
    })
  // the site as README lays it out: it includes the upstream the first deploy writes, a glob that
  // matches nothing yet, as the last include nginx's config walk meets
  const svc = fixture.services()
  const upstream = path.join(svc.nginxConfd, `${a.name}-upstream.conf`)
  writeFileSync(
    path.join(svc.nginxConfd, `${a.name}-site.conf`),
    `include ${svc.nginxConfd}/${a.name}-upstream*.conf;\nserver {\n  listen 127.0.0.1:${a.lbPort};\n  location / { proxy_pass http://${a.name}; }\n}\n`
  )
  expect(existsSync(upstream)).toBe(false)
  const ready = await check()
  if (ready.code !== 0) throw new Error(ready.out)
  expect(ready.out).toMatch(/ok {4}ssh: logged in as \S+, host key pinned/)
  expect(ready.out).toMatch(/ok {4}nginx-include: nginx includes \S+clicheck-\S+-upstream\.conf/)
  expect(ready.out).toMatch(/ok {4}nginx-site: a site proxies to http:\/\/clicheck/)
  expect(ready.out).toContain('Ready for a first deploy.')

  const outside = mkdtempSync(path.join(tmpdir(), 'bgd-upstream-'))
  const taken = createServer(() => undefined)
  await new Promise<void>((r) =>
    taken.listen(Number(a.inputs['blue-port']), '127.0.0.1', () => r())
  )
  try {
    const cases: [string, Record<string, string>, RegExp][] = [
      [
        "a host key that is not the server's",
        { 'host-fingerprint': 'SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' },
        /FAIL {2}ssh: .*host key/i
      ],
      [
        'an upstream file nginx does not include',
        { 'nginx-upstream-file': path.join(outside, 'clicheck-upstream.conf') },
        /FAIL {2}nginx-include: nginx does not include \S+: add 'include \S+-upstream\*\.conf;'/
      ],
      [
        'an upstream file in a directory that does not exist',
        { 'nginx-upstream-file': '/nonexistent/bg/clicheck-upstream.conf' },
        /FAIL {2}upstream-file: \/nonexistent\/bg does not exist: create it/
      ],
      [
        'no site proxying to the upstream',
        { 'nginx-upstream-name': 'nosuchsite' },
        /FAIL {2}nginx-site: no site proxies to the upstream nosuchsite: add 'location \/ \{ proxy_pass http:\/\/nosuchsite; \}'/
      ],
      [
        'nginx-test-command failing',
        { 'nginx-test-command': 'nginx -t -q -c /nonexistent/nginx.conf' },
        /FAIL {2}nginx-test: 'nginx -t -q -c \/nonexistent\/nginx\.conf' failed/
      ],
      ['a port taken by another process', {}, /FAIL {2}port-blue: \d+ is taken by another process/],
      [
        'a sudo rule missing for the reload',
        { 'nginx-reload-command': 'sudo -n /usr/sbin/nginx-not-allowed -s reload' },
        /FAIL {2}nginx-reload: sudo does not allow/
      ]
    ]
    const seen: string[] = []
    for (const [what, over, line] of cases) {
      const r = await check(over)
      seen.push(`${what}: exit ${r.code}`)
      expect([what, r.code]).toEqual([what, 1])
      expect([what, r.out]).toEqual([what, expect.stringMatching(line)])
      expect(r.out).toContain('Some checks failed')
    }
    console.log(`bg-deploy check, broken on purpose: ${seen.join('; ')}`)
  } finally {
    taken.close()
  }
}, 120_000)
