// The SSH errors a user meets, against the real sshd: each says what happened and what to do,
// and nothing is built or pushed first.
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { appFixture, deployApp, registryTags, type Services } from './helpers.js'

const fixture = appFixture()
let svc: Services
let keyDir: string
beforeAll(() => {
  svc = fixture.services()
  keyDir = mkdtempSync(path.join(tmpdir(), 'bgd-key-'))
})
afterAll(() => rmSync(keyDir, { recursive: true, force: true }))

function freshKey(type: string, passphrase = ''): string {
  const file = path.join(keyDir, `${type}-${Date.now()}`)
  execFileSync('ssh-keygen', ['-q', '-t', type, '-N', passphrase, '-f', file])
  return readFileSync(file, 'utf8')
}

test('a key the server does not accept: refused, naming the key type and authorized_keys', async () => {
  const a = fixture.newApp('auth', { version: 'v1.0.0' })
  const run = await deployApp(a, { inputs: { 'ssh-key': freshKey('ecdsa') } })
  expect(run.code).toBe(1)
  expect(run.log).toMatch(
    /The server refused authentication for root@127\.0\.0\.1:\d+ with the ecdsa-sha2-nistp256 key from 'ssh-key'\. Add its public key .* to ~root\/\.ssh\/authorized_keys/
  )
  expect(await registryTags(svc.registry, a.repo)).toEqual([])
}, 60_000)

test('an encrypted key without its passphrase is refused before connecting', async () => {
  const a = fixture.newApp('pass', { version: 'v1.0.0' })
  const run = await deployApp(a, { inputs: { 'ssh-key': freshKey('ed25519', 'sesame-phrase') } })
  expect(run.code).toBe(1)
  expect(run.log).toMatch(/Input 'ssh-key' is encrypted and no 'ssh-passphrase' was given/)
}, 60_000)

test('nothing listening on the port: connection refused, with what to check', async () => {
  const a = fixture.newApp('refused', { version: 'v1.0.0' })
  const run = await deployApp(a, { inputs: { port: '9' } })
  expect(run.code).toBe(1)
  expect(run.log).toMatch(
    /Cannot connect to root@127\.0\.0\.1:9: connection refused\. Check 'host' and 'port'/
  )
  expect(await registryTags(svc.registry, a.repo)).toEqual([])
}, 60_000)

test('a host name that does not resolve says so', async () => {
  const a = fixture.newApp('nohost', { version: 'v1.0.0' })
  const run = await deployApp(a, { inputs: { host: 'no-such-host.invalid' } })
  expect(run.code).toBe(1)
  expect(run.log).toMatch(/the host name 'no-such-host\.invalid' does not resolve/)
}, 60_000)
