// Least privilege: a non-root deploy user in the docker group, allowed by sudoers to run
// exactly nginx's test and reload commands as root and nothing else, deploys and rolls back end to
// end under load; what it leaves on the server is owner-only.
import { execFileSync, spawnSync } from 'node:child_process'
import { mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import {
  Load,
  appFixture,
  commitVersion,
  deployApp,
  expectOk,
  httpGet,
  type TestApp
} from './helpers.js'

const fixture = appFixture()
const USER = 'bgdeploy'
const SUDOERS = '/etc/sudoers.d/bg-deploy-test'
let upstreamDir: string
let home: string

const sh = (cmd: string, ...args: string[]) =>
  execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] }).toString()

beforeAll(() => {
  const svc = fixture.services()
  if (spawnSync('id', [USER]).status !== 0) sh('useradd', '-m', '-s', '/bin/bash', USER)
  sh('usermod', '-aG', 'docker', USER)
  // sshd without PAM refuses a locked account ('!' in shadow); '*' has no password and is not locked
  sh('usermod', '-p', '*', USER)
  home = sh('getent', 'passwd', USER).split(':')[5]!
  // the test client key, in the user's own authorized_keys (sshd reads it as that user)
  mkdirSync(path.join(home, '.ssh'), { recursive: true, mode: 0o700 })
  writeFileSync(
    path.join(home, '.ssh/authorized_keys'),
    readFileSync(`${svc.sshKeyFile}.pub`, 'utf8'),
    { mode: 0o600 }
  )
  sh('chown', '-R', `${USER}:${USER}`, path.join(home, '.ssh'))
  // the upstream lives in a directory the deploy user owns, included by the site
  // (outside the services' directory, which only root may enter)
  upstreamDir = `/tmp/bg-deploy-${USER}-upstreams`
  mkdirSync(upstreamDir, { recursive: true })
  sh('chown', `${USER}:${USER}`, upstreamDir)
  // the sudoers line the README documents, for this nginx's config file
  const line = `${USER} ALL=(root) NOPASSWD: /usr/sbin/nginx -t -q -c ${svc.nginxConf}, /usr/sbin/nginx -T -q -c ${svc.nginxConf}, /usr/sbin/nginx -c ${svc.nginxConf} -s reload\n`
  writeFileSync(`${SUDOERS}.tmp`, line, { mode: 0o440 })
  sh('visudo', '-cf', `${SUDOERS}.tmp`)
  sh('mv', `${SUDOERS}.tmp`, SUDOERS)
})

afterAll(() => {
  rmSync(SUDOERS, { force: true })
})

function nonRootApp(prefix: string): TestApp {
  const svc = fixture.services()
  const a = fixture.newApp(prefix, { version: 'v1.0.0', startDelay: 1 })
  const upstream = path.join(upstreamDir, `${a.name}-upstream.conf`)
  // a glob include: nginx -t passes before the first deploy wrote the file
  writeFileSync(
    path.join(svc.nginxConfd, `${a.name}-site.conf`),
    `include ${upstreamDir}/${a.name}-upstream*.conf;\nserver {\n  listen 127.0.0.1:${a.lbPort};\n  location / { proxy_pass http://${a.name}; }\n}\n`
  )
  Object.assign(a.inputs, {
    username: USER,
    'nginx-upstream-file': upstream,
    'nginx-test-command': `sudo -n /usr/sbin/nginx -t -q -c ${svc.nginxConf}`,
    'nginx-reload-command': `sudo -n /usr/sbin/nginx -c ${svc.nginxConf} -s reload`
  })
  return a
}

test('a non-root user with sudo for nginx test, config dump and reload only deploys (watched) and rolls back with 0 failed requests', async () => {
  // sudo allows the deploy user nginx's three commands and nothing else
  const allowed = spawnSync('runuser', ['-u', USER, '--', 'sudo', '-n', '-l'], {
    encoding: 'utf8'
  }).stdout.replace(/\s+/g, ' ')
  expect(allowed).toMatch(
    /NOPASSWD: \/usr\/sbin\/nginx -t -q -c .*, \/usr\/sbin\/nginx -T -q -c .*, \/usr\/sbin\/nginx -c .* -s reload/
  )
  expect(spawnSync('runuser', ['-u', USER, '--', 'sudo', '-n', 'true']).status).not.toBe(0)

  const a = nonRootApp('nonroot')
  expectOk(await deployApp(a))
  expect((await httpGet(a.url)).body).toBe('v1.0.0\n')

  commitVersion(a, { version: 'v2.0.0', startDelay: 1 })
  const load = await new Load().start(a.url)
  // the watch reads nginx's effective config through sudo (nginx -T) and its log
  const run = await deployApp(a, { inputs: { watch: '3' } })
  expectOk(run)
  expect(run.log).toMatch(
    /the watch passed: in 3\.\d s after the switch nginx answered [1-9]\d* request/
  )
  const state = path.join(home, '.bg-deploy', a.name)
  execFileSync('flock', ['-w', '30', path.join(state, 'lock'), 'true'])
  const back = await deployApp(a, {
    inputs: { rollback: 'previous' },
    eventName: 'workflow_dispatch',
    event: { inputs: { rollback: 'previous' } }
  })
  expectOk(back)
  execFileSync('flock', ['-w', '30', path.join(state, 'lock'), 'true'])
  const stats = await load.stop()
  console.log(
    `non-root deploy + rollback under load: ${stats.requests} requests, ${stats.non2xx} non-2xx, ${stats.errors} errors, ${stats.races} keep-alive races retried`
  )
  expect(stats).toMatchObject({ non2xx: 0, slowFailed: 0 })
  expect(stats.errorsByKind).toMatchObject({ fresh: 0, slow: 0 })
  expect((await httpGet(a.url)).body).toBe('v1.0.0\n')

  // state in the user's home, owner-only, owned by the deploy user; nothing under /var/lib
  const uid = Number(sh('id', '-u', USER).trim())
  expect(statSync(state).mode & 0o777).toBe(0o700)
  for (const f of readdirSync(state).map((f) => path.join(state, f))) {
    expect([f, statSync(f).mode & 0o077, statSync(f).uid]).toEqual([f, 0, uid])
  }
  expect(spawnSync('test', ['-e', `/var/lib/bg-deploy/${a.name}`]).status).not.toBe(0)
  rmSync(state, { recursive: true, force: true })
}, 240_000)
