// What comes from outside is checked, and no piece of a secret is printed, end to end: a PEM key
// in a multi-line env value reaches the container byte for byte and no 8-character piece of it
// is printed; an app whose log lines are workflow commands cannot make the runner execute one.
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { runnerCommands } from '../support/runner-commands.js'
import {
  appFixture,
  commitVersion,
  deployApp,
  expectOk,
  httpGet,
  settled,
  visibleLog,
  type ActionRun
} from './helpers.js'

const fixture = appFixture()
let keyDir: string
beforeAll(() => {
  keyDir = mkdtempSync(path.join(tmpdir(), 'bgd-pem-'))
})
afterAll(() => rmSync(keyDir, { recursive: true, force: true }))

function pemKey(): string {
  const file = path.join(keyDir, `k${Date.now()}`)
  execFileSync('ssh-keygen', ['-q', '-t', 'rsa', '-b', '2048', '-m', 'PEM', '-N', '', '-f', file])
  return readFileSync(file, 'utf8').trimEnd()
}

/** Every 8-character piece of the key's secret lines (the base64 body). */
function pieces(key: string): Set<string> {
  const out = new Set<string>()
  for (const line of key.split('\n').filter((l) => !l.startsWith('-----')))
    for (let i = 0; i + 8 <= line.length; i++) out.add(line.slice(i, i + 8))
  return out
}

function expectNoPiece(run: ActionRun, key: string): void {
  const places = {
    log: visibleLog(run),
    summary: run.summary,
    outputs: JSON.stringify(run.outputs)
  }
  for (const [place, text] of Object.entries(places))
    for (const p of pieces(key))
      if (text.includes(p)) throw new Error(`8 characters of the key (${p}) appear in the ${place}`)
}

test('a PEM key in a double-quoted multi-line env value arrives byte for byte, and no piece of it is printed', async () => {
  const key = pemKey()
  const a = fixture.newApp(
    'pem',
    { version: 'v1.0.0' },
    { env: `# the key, as a dotenv file holds it\nexport TLS_KEY="${key}"\nMODE='plain $text'` }
  )
  const run = await deployApp(a)
  expectOk(run)
  expect((await httpGet(`${a.url}cgi-bin/env?TLS_KEY`)).body).toBe(`${key}\n`)
  expect((await httpGet(`${a.url}cgi-bin/env?MODE`)).body).toBe('plain $text\n')
  expectNoPiece(run, key)
  // and again on a second deploy, where the key goes to the other color
  settled(a)
  commitVersion(a, { version: 'v2.0.0' })
  const second = await deployApp(a)
  expectOk(second)
  expect((await httpGet(`${a.url}cgi-bin/env?TLS_KEY`)).body).toBe(`${key}\n`)
  expectNoPiece(second, key)
}, 180_000)

test('a malformed env line fails the run naming only its line number', async () => {
  const key = pemKey()
  // the quote is never closed: every line after it would be part of the value
  const a = fixture.newApp('pembad', { version: 'v1.0.0' }, { env: `A=1\nTLS_KEY="${key}\nB=2` })
  const run = await deployApp(a)
  expect(run.code).toBe(1)
  expect(run.log).toMatch(/Invalid env line 2: a double-quoted value must end with "/)
  expectNoPiece(run, key)
  expect(visibleLog(run)).not.toMatch(/BEGIN RSA|TLS_KEY/)
}, 60_000)

test('an app whose log lines are workflow commands fails its health check and issues no command', async () => {
  const hostile = [
    '::error::x',
    ' ::add-mask::v1',
    'log ##[set-output name=x;]y',
    'a\r::warning::b'
  ]
  const a = fixture.newApp(
    'cmds',
    { version: 'v1.0.0' },
    {
      'health-path': '/health',
      'health-timeout': '3'
    }
  )
  expectOk(await deployApp(a))
  settled(a)
  commitVersion(a, { version: 'v2.0.0', neverHealthy: true, logLines: hostile })
  const run = await deployApp(a)
  expect(run.code).toBe(1)
  expect(run.log).toMatch(/did not answer 2xx/)
  // the app's lines were shown (inert) ...
  expect(run.log).toContain('log ##[set-output name=x;]y')
  expect(run.log).toContain('::error::x')
  // ... and the runner would execute none of them
  const commands = runnerCommands(run.log)
  const foreign = commands.filter(
    (c) =>
      (c.command === 'error' && c.data === 'x') ||
      (c.command === 'add-mask' && c.data === 'v1') ||
      c.command === 'set-output' ||
      (c.command === 'warning' && c.data === 'b')
  )
  expect(foreign).toEqual([])
  // the action's own commands still work: its groups and the failure annotation
  expect(commands.some((c) => c.command === 'group')).toBe(true)
  expect(commands.some((c) => c.command === 'error' && /did not answer 2xx/.test(c.data))).toBe(
    true
  )
  expect((await httpGet(a.url)).body).toBe('v1.0.0\n')
}, 180_000)

test('a job summary that cannot be written is a warning: the finished deploy still succeeds', async () => {
  const a = fixture.newApp('nosummary', { version: 'v1.0.0' })
  const run = await deployApp(a, { env: { GITHUB_STEP_SUMMARY: '/nonexistent/dir/summary.md' } })
  expect(run.code).toBe(0)
  expect(run.log).toMatch(/::warning::The job summary could not be written/)
  expect(run.outputs.deployed).toBe('true')
  expect((await httpGet(a.url)).body).toBe('v1.0.0\n')
}, 120_000)
