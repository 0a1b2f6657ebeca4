// The command line (`npx bg-deploy`, bin/bg-deploy.mjs) against the real services: deploy from a
// working copy under load, status, and a rollback, with the action's inputs as flags, the key in a
// file and no GitHub at all.
import { spawn } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
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
