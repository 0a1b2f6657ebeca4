// Secrets and files: a real run with every kind of secret (an encrypted SSH key and its
// passphrase, registry credentials, env values, the GitHub token) prints none of them anywhere in
// its job log, summary or outputs, leaves no temporary credentials behind (also when the deploy
// fails), and leaves only owner-only files on the server.
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, copyFileSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { tmpdir } from 'node:os'
import path from 'node:path'
import {
  FakeGitHub,
  appFixture,
  commitVersion,
  deployApp,
  expectOk,
  httpGet,
  settled,
  visibleLog,
  type ActionRun,
  type TestApp,
  stateDir
} from './helpers.js'

const fixture = appFixture()
let github: FakeGitHub
let keyDir: string

beforeAll(async () => {
  github = await new FakeGitHub().start()
  keyDir = mkdtempSync(path.join(tmpdir(), 'bgd-key-'))
})
afterAll(async () => {
  await github.stop()
  rmSync(keyDir, { recursive: true, force: true })
})

const token = (prefix: string) => `${prefix}${randomBytes(12).toString('hex')}`

/** Inputs holding one secret of each kind, and the list of strings that must never be printed. */
function secretInputs(): { inputs: Record<string, string>; secrets: string[] } {
  const passphrase = token('pp-')
  const key = path.join(keyDir, `key-${passphrase}`)
  copyFileSync(fixture.services().sshKeyFile, key)
  execFileSync('ssh-keygen', ['-q', '-p', '-P', '', '-N', passphrase, '-f', key])
  const sshKey = readFileSync(key, 'utf8')
  const registryPassword = token('rp-')
  const githubToken = token('ghs_')
  const envA = token('env-a-')
  const envB = `${token('env-b-')} with spaces`
  const keyLines = sshKey.split('\n').filter((l) => l.length >= 8 && !l.startsWith('-----'))
  return {
    inputs: {
      'ssh-key': sshKey,
      'ssh-passphrase': passphrase,
      'registry-username': 'deployer',
      'registry-password': registryPassword,
      'github-token': githubToken,
      'create-release': 'true',
      env: `DB_PASSWORD=${envA}\nAPI_KEY=${envB}`
    },
    secrets: [passphrase, registryPassword, githubToken, envA, envB, ...keyLines]
  }
}

function expectNoSecret(run: ActionRun, secrets: string[], where: string[] = []) {
  const places = {
    'job log': visibleLog(run),
    summary: run.summary,
    outputs: JSON.stringify(run.outputs),
    ...Object.fromEntries(where.map((f) => [f, readFileSync(f, 'utf8')]))
  }
  for (const [place, text] of Object.entries(places))
    for (const s of secrets)
      if (text.includes(s)) throw new Error(`a secret (${s.slice(0, 6)}…) appears in the ${place}`)
}

/**
 * Where registry credentials could stay: temporary Docker configs under /tmp (the server side's),
 * and the runner user's own Docker config (a login into it would outlive the run).
 */
function dockerConfigs(): string[] {
  const temporary = readdirSync('/tmp').filter((d) => {
    try {
      return statSync(path.join('/tmp', d, 'config.json')).isFile()
    } catch {
      return false
    }
  })
  let own = ''
  try {
    own = readFileSync(path.join(process.env.HOME ?? '/root', '.docker/config.json'), 'utf8')
  } catch {
    /* none */
  }
  return [...temporary, own]
}

/** Every file in the app's state directory, those in its subdirectories too. */
function stateFiles(a: TestApp, dir = stateDir(a)): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = path.join(dir, f)
    return statSync(p).isDirectory() ? stateFiles(a, p) : [p]
  })
}

/**
 * The run spec records (specs/VERSION) hold the env, by design: a rollback puts a version back
 * with it (docs/application.md). They hold no other secret, and are owner-only like the rest.
 */
function expectSpecsHoldOnlyTheEnv(a: TestApp, secrets: string[], env: string[]): void {
  const specs = stateFiles(a).filter((f) => path.basename(path.dirname(f)) === 'specs')
  expect(specs.length).toBeGreaterThan(0)
  const b64 = (v: string) => Buffer.from(v).toString('base64')
  for (const f of specs) {
    const text = readFileSync(f, 'utf8')
    for (const v of env) expect(text).toContain(b64(v))
    for (const secret of secrets.filter((x) => !env.includes(x)))
      expect(text.includes(secret) || text.includes(b64(secret))).toBe(false)
    expect(statSync(f).mode & 0o077).toBe(0)
  }
}

test('a deploy with every kind of secret prints none, keeps none in files, and leaves owner-only files', async () => {
  const { inputs, secrets } = secretInputs()
  const before = dockerConfigs()
  const a = fixture.newApp('secret', { version: 'v1.0.0' }, inputs)
  expectOk(await deployApp(a, { apiUrl: github.url }))
  commitVersion(a, { version: 'v2.0.0' })
  const run = await deployApp(a, { apiUrl: github.url })
  expectOk(run)
  settled(a)
  expect((await httpGet(a.url)).body).toBe('v2.0.0\n')
  // the token did reach GitHub's API, and the env values the container
  expect(github.requests.some((r) => r.auth?.includes(inputs['github-token']!))).toBe(true)
  expect((await httpGet(`${a.url}cgi-bin/env?DB_PASSWORD`)).body).toBe(`${secrets[3]}\n`)

  const files = stateFiles(a)
  expectSpecsHoldOnlyTheEnv(a, secrets, [secrets[3]!, secrets[4]!])
  expectNoSecret(
    run,
    secrets,
    files.filter((f) => path.basename(path.dirname(f)) !== 'specs')
  )
  const basic = Buffer.from(`deployer:${inputs['registry-password']}`).toString('base64')
  expect(dockerConfigs().join('\n')).not.toContain(basic)
  expect(dockerConfigs()).toEqual(before)
  expect(files.filter((f) => path.basename(f).startsWith('.env'))).toEqual([])
  // owner-only: the state directory and everything in it
  expect(statSync(stateDir(a)).mode & 0o777).toBe(0o700)
  for (const f of files) expect([f, statSync(f).mode & 0o077]).toEqual([f, 0])
}, 180_000)

test('a failing deploy prints no secret either and leaves no temporary credentials', async () => {
  const { inputs, secrets } = secretInputs()
  const before = dockerConfigs()
  const a = fixture.newApp(
    'secretfail',
    { version: 'v1.0.0' },
    {
      ...inputs,
      'health-path': '/health',
      'health-timeout': '2'
    }
  )
  expectOk(await deployApp(a, { apiUrl: github.url }))
  commitVersion(a, { version: 'v2.0.0', neverHealthy: true })
  const run = await deployApp(a, { apiUrl: github.url })
  expect(run.code).toBe(1)
  expect(run.log).toMatch(/did not answer 2xx/)
  expect((await httpGet(a.url)).body).toBe('v1.0.0\n')
  expectNoSecret(
    run,
    secrets,
    stateFiles(a).filter((f) => path.basename(path.dirname(f)) !== 'specs')
  )
  expectSpecsHoldOnlyTheEnv(a, secrets, [secrets[3]!, secrets[4]!])
  expect(dockerConfigs()).toEqual(before)
  expect(stateFiles(a).filter((f) => path.basename(f).startsWith('.env'))).toEqual([])
}, 180_000)
