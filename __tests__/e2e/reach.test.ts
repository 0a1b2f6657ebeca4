// SSH as people reach servers, against real sshds: a deploy through a bastion (a second sshd on
// loopback with its own user, key and host key, which lets its user forward only to the test
// server), and the two timeouts that keep a runner from hanging on an unresponsive server.
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, type Server, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import {
  Load,
  appFixture,
  commitVersion,
  deployApp,
  expectOk,
  httpGet,
  registryTags,
  stateDir,
  visibleLog,
  waitFor,
  type Services
} from './helpers.js'

const fixture = appFixture()
let svc: Services
const JUMP_USER = 'bgjump'

/** A free loopback port, as the kernel hands one out. */
async function freePort(): Promise<number> {
  const s = createServer()
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', () => resolve()))
  const port = (s.address() as { port: number }).port
  await new Promise((resolve) => s.close(resolve))
  return port
}

const bastion = {
  dir: '',
  port: 0,
  key: '',
  fingerprint: '',
  pid: 0,
  log: ''
}

beforeAll(async () => {
  svc = fixture.services()
  const dir = mkdtempSync(path.join(tmpdir(), 'bgd-bastion-'))
  bastion.dir = dir
  if (spawnSync('id', [JUMP_USER]).status !== 0)
    execFileSync('useradd', ['-m', '-s', '/bin/bash', JUMP_USER])
  // sshd without PAM refuses a locked account ('!' in shadow); '*' has no password and is not locked
  execFileSync('usermod', ['-p', '*', JUMP_USER])
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', `${dir}/host_key`])
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', `${dir}/client_key`])
  // the bastion's own key, in its user's authorized_keys (sshd reads it as that user)
  const home = execFileSync('getent', ['passwd', JUMP_USER], { encoding: 'utf8' }).split(':')[5]!
  mkdirSync(path.join(home, '.ssh'), { recursive: true, mode: 0o700 })
  writeFileSync(path.join(home, '.ssh/authorized_keys'), readFileSync(`${dir}/client_key.pub`), {
    mode: 0o600
  })
  execFileSync('chown', ['-R', `${JUMP_USER}:${JUMP_USER}`, path.join(home, '.ssh')])
  bastion.key = readFileSync(`${dir}/client_key`, 'utf8')
  bastion.fingerprint = execFileSync('ssh-keygen', ['-lf', `${dir}/host_key.pub`], {
    encoding: 'utf8'
  }).trim()
  bastion.port = await freePort()
  bastion.log = `${dir}/sshd.log`
  writeFileSync(
    `${dir}/sshd_config`,
    [
      `Port ${bastion.port}`,
      'ListenAddress 127.0.0.1',
      `HostKey ${dir}/host_key`,
      `PidFile ${dir}/sshd.pid`,
      'AuthorizedKeysFile .ssh/authorized_keys',
      `AllowUsers ${JUMP_USER}`,
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'UsePAM no',
      'StrictModes no',
      'LogLevel DEBUG1',
      // the bastion's user may reach the test server and nothing else
      `PermitOpen ${svc.sshHost}:${svc.sshPort}`,
      ''
    ].join('\n')
  )
  execFileSync('/usr/sbin/sshd', ['-f', `${dir}/sshd_config`, '-E', bastion.log])
  await waitFor('the bastion sshd', () => {
    try {
      bastion.pid = Number(readFileSync(`${dir}/sshd.pid`, 'utf8'))
      return bastion.pid > 0
    } catch {
      return false
    }
  })
})

afterAll(() => {
  if (bastion.pid) spawnSync('kill', [String(bastion.pid)])
  if (process.env.KEEP_BASTION) console.log(readFileSync(bastion.log, 'utf8').slice(-4000))
  rmSync(bastion.dir, { recursive: true, force: true })
})

const through = (extra: Record<string, string> = {}) => ({
  'proxy-jump': `${JUMP_USER}@127.0.0.1:${bastion.port}`,
  'proxy-jump-key': bastion.key,
  'proxy-jump-fingerprint': bastion.fingerprint,
  ...extra
})

test('a deploy through a bastion (proxy-jump: its own user, key and pinned host key), under load with 0 failed requests', async () => {
  const a = fixture.newApp('jump', { version: 'v1.0.0' })
  const first = await deployApp(a, { inputs: through() })
  expectOk(first)
  commitVersion(a, { version: 'v2.0.0' })
  const load = await new Load().start(a.url)
  const run = await deployApp(a, { inputs: through() })
  const stats = await load.stop()
  expectOk(run)
  expect(run.outputs).toMatchObject({ deployed: 'true', version: 'v2.0.0' })
  expect(stats.non2xx).toBe(0)
  expect(stats.errors).toBe(0)
  expect((await httpGet(a.url)).body).toBe('v2.0.0\n')
  // the server was reached through the bastion: its sshd opened the channel to the server
  const log = readFileSync(bastion.log, 'utf8')
  expect(log).toMatch(new RegExp(`Accepted publickey for ${JUMP_USER}`))
  expect(log).toMatch(
    new RegExp(`direct_tcpip: originator .*, target ${svc.sshHost} port ${svc.sshPort}$`, 'm')
  )
}, 180_000)

test('a bastion whose host key is not the pinned one is refused before anything is built', async () => {
  const a = fixture.newApp('jumpkey', { version: 'v1.0.0' })
  const run = await deployApp(a, {
    inputs: through({ 'proxy-jump-fingerprint': svc.fingerprintEd25519 })
  })
  expect(run.code).toBe(1)
  expect(visibleLog(run)).toMatch(
    new RegExp(
      `Host key verification failed for proxy-jump 127\\.0\\.0\\.1:${bastion.port}: .* update proxy-jump-fingerprint`
    )
  )
  expect(await registryTags(svc.registry, a.repo)).toEqual([])
}, 60_000)

test('a bastion that will not forward to the server says so, naming AllowTcpForwarding', async () => {
  const a = fixture.newApp('jumpdeny', { version: 'v1.0.0' })
  // port 9 on the test server: not in the bastion's PermitOpen
  const run = await deployApp(a, { inputs: through({ port: '9' }) })
  expect(run.code).toBe(1)
  expect(visibleLog(run)).toMatch(
    new RegExp(
      `The bastion ${JUMP_USER}@127\\.0\\.0\\.1:${bastion.port} refused to connect to 127\\.0\\.0\\.1:9 .*AllowTcpForwarding`
    )
  )
  expect(await registryTags(svc.registry, a.repo)).toEqual([])
}, 60_000)

test('connect-timeout: a server that accepts but never speaks SSH fails the run within it', async () => {
  const sockets: Socket[] = []
  const silent: Server = createServer((s) => sockets.push(s))
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', () => resolve()))
  const port = (silent.address() as { port: number }).port
  try {
    const a = fixture.newApp('ctimeout', { version: 'v1.0.0' })
    const run = await deployApp(a, { inputs: { port: String(port), 'connect-timeout': '2' } })
    expect(run.code).toBe(1)
    expect(visibleLog(run)).toContain(
      `Cannot connect to root@127.0.0.1:${port}: no SSH handshake within connect-timeout (2 s)`
    )
    expect(run.ms).toBeLessThan(15_000)
    expect(await registryTags(svc.registry, a.repo)).toEqual([])
  } finally {
    for (const s of sockets) s.destroy()
    silent.close()
  }
}, 60_000)

test('command-timeout: a script stuck on the server (its lock held) ends the run in time; v1 keeps serving', async () => {
  const a = fixture.newApp('cmdtimeout', { version: 'v1.0.0' })
  expectOk(await deployApp(a))
  commitVersion(a, { version: 'v2.0.0' })
  // another process holds the app's deploy lock for longer than the run may take
  const holder: ChildProcess = spawn('flock', [path.join(stateDir(a), 'lock'), 'sleep', '120'], {
    stdio: 'ignore'
  })
  try {
    await waitFor('the lock to be held', () => {
      return spawnSync('flock', ['-n', path.join(stateDir(a), 'lock'), 'true']).status !== 0
    })
    const load = await new Load().start(a.url)
    const run = await deployApp(a, {
      inputs: { 'command-timeout': '10', 'health-timeout': '5', 'drain-timeout': '2' }
    })
    const stats = await load.stop()
    expect(run.code).toBe(1)
    expect(visibleLog(run)).toContain(
      "The server's script did not finish within command-timeout (10 s), so the runner closed its connection."
    )
    expect(visibleLog(run)).toContain('holds the lock')
    expect(run.ms).toBeLessThan(40_000)
    expect(stats.non2xx + stats.errors).toBe(0)
    expect((await httpGet(a.url)).body).toBe('v1.0.0\n')
  } finally {
    holder.kill()
  }
}, 120_000)
