// The test servers of scripts/hosts.sh (network namespaces), and an app deployed across them.
import { spawnSync } from 'node:child_process'
import { existsSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { ROOT, readEnvFile } from './services.mjs'

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
