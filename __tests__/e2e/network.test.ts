// Containerized nginx on a docker network: the upstream names containers, the nginx commands are
// `docker exec`, and the upstream file sits in a directory mounted as the container's conf.d.
import { execFileSync } from 'node:child_process'
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import {
  Load,
  appContainers,
  settled,
  commitVersion,
  deployApp,
  docker,
  expectOk,
  httpGet,
  newApp,
  removeApp,
  services,
  sleep,
  type Services,
  type TestApp
} from './helpers.js'

const NET = 'bgd-test-net'
const NGINX = 'bgd-test-nginx'
let svc: Services
let confd: string
let build: string
let app: TestApp | undefined

/** An nginx image FROM scratch: the host's nginx binary and the libraries it links. */
function buildNginxImage(): void {
  build = mkdtempSync(path.join(tmpdir(), 'bgd-nginx-'))
  const root = path.join(build, 'rootfs')
  const libs = execFileSync('ldd', ['/usr/sbin/nginx']).toString().match(/\/\S+/g)!
  for (const f of ['/usr/sbin/nginx', ...libs]) {
    mkdirSync(path.join(root, path.dirname(f)), { recursive: true })
    copyFileSync(f, path.join(root, f))
  }
  for (const d of ['etc/nginx/conf.d', 'run', 'tmp', 'var/log/nginx'])
    mkdirSync(path.join(root, d), { recursive: true })
  writeFileSync(
    path.join(root, 'etc/passwd'),
    'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n'
  )
  writeFileSync(path.join(root, 'etc/group'), 'root:x:0:\nnogroup:x:65534:\n')
  writeFileSync(
    path.join(root, 'etc/nginx/nginx.conf'),
    [
      'user root;',
      'daemon off;',
      'pid /run/nginx.pid;',
      'error_log stderr warn;',
      'events { worker_connections 1024; }',
      'http {',
      '  access_log off;',
      '  client_body_temp_path /tmp/body; proxy_temp_path /tmp/proxy; fastcgi_temp_path /tmp/fcgi;',
      '  uwsgi_temp_path /tmp/uwsgi; scgi_temp_path /tmp/scgi;',
      '  include /etc/nginx/conf.d/*.conf;',
      '}',
      ''
    ].join('\n')
  )
  writeFileSync(
    path.join(build, 'Dockerfile'),
    'FROM scratch\nCOPY rootfs /\nCMD ["/usr/sbin/nginx"]\n'
  )
  docker('build', '-q', '-t', 'bgd-test/nginx:local', build)
}

beforeAll(async () => {
  svc = services()
  buildNginxImage()
  confd = mkdtempSync(path.join(tmpdir(), 'bgd-confd-'))
  try {
    docker('network', 'create', NET)
  } catch {
    /* exists */
  }
  docker('rm', '-f', NGINX)
}, 120_000)

afterAll(() => {
  if (app) removeApp(svc, app)
  docker('rm', '-f', NGINX)
  try {
    docker('network', 'rm', NET)
  } catch {
    /* in use or gone */
  }
  rmSync(confd, { recursive: true, force: true })
  rmSync(build, { recursive: true, force: true })
})

test('containerized nginx on a docker network: first deploy and v1 → v2 under load', async () => {
  app = newApp(svc, 'net', { version: 'v1.0.0' })
  const lbPort = app.lbPort + 5
  // the site lives in the container's conf.d, not in the host nginx
  rmSync(path.join(svc.nginxConfd, `${app.name}-site.conf`))
  docker(
    'run',
    '-d',
    '--name',
    NGINX,
    '--label',
    'bg-deploy.test=1',
    '--network',
    NET,
    '-v',
    `${confd}:/etc/nginx/conf.d`,
    '-p',
    `127.0.0.1:${lbPort}:80`,
    'bgd-test/nginx:local'
  )
  await sleep(300)
  writeFileSync(
    path.join(confd, 'site.conf'),
    `server {\n  listen 80;\n  location / { proxy_pass http://${app.name}; }\n}\n`
  )
  app.inputs = {
    ...app.inputs,
    network: NET,
    'nginx-upstream-file': path.join(confd, `${app.name}-upstream.conf`),
    'nginx-test-command': `docker exec ${NGINX} nginx -t -q`,
    'nginx-reload-command': `docker exec ${NGINX} nginx -s reload`
  }
  const url = `http://127.0.0.1:${lbPort}/`

  const first = await deployApp(app)
  expectOk(first)
  expect(readFileSync(app.inputs['nginx-upstream-file']!, 'utf8')).toContain(
    `server ${app.name}-blue:8080;`
  )
  expect((await httpGet(url)).body).toBe('v1.0.0\n')

  commitVersion(app, { version: 'v2.0.0', startDelay: 1 })
  const load = await new Load().start(url)
  const run = await deployApp(app)
  const stats = await load.stop()
  expectOk(run)
  console.log('containerized nginx v1 -> v2 under load', JSON.stringify({ ms: run.ms, stats }))
  expect(readFileSync(app.inputs['nginx-upstream-file']!, 'utf8')).toContain(
    `server ${app.name}-green:8080;`
  )
  expect(stats).toMatchObject({ non2xx: 0, errors: 0, slowFailed: 0 })
  expect(stats.versions['v2.0.0']!.count).toBeGreaterThan(0)
  expect((await httpGet(url)).body).toBe('v2.0.0\n')
  settled(app)
  expect(appContainers(app)).toEqual({
    [`${app.name}-green`]: 'running',
    [`${app.name}-blue`]: 'exited'
  })
}, 180_000)
