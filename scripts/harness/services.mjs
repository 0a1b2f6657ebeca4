// The loopback services scripts/services.sh started, their settings, and cleaning up after an app.
import { spawnSync, execFileSync } from 'node:child_process'
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import path from 'node:path'

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')

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
  // and what else the app ran (workers, compose-file's accessories), its network and volumes
  const ls = (/** @type {string[]} */ ...args) =>
    spawnSync('docker', args, { encoding: 'utf8' }).stdout?.split('\n').filter(Boolean) ?? []
  const ids = ls('ps', '-aq', '--filter', `label=bg-deploy.app=${name}`)
  if (ids.length) spawnSync('docker', ['rm', '-f', ...ids], { stdio: 'ignore' })
  spawnSync('docker', ['network', 'rm', `${name}_default`], { stdio: 'ignore' })
  const vols = ls('volume', 'ls', '-q', '--filter', `name=^${name}_`)
  if (vols.length) spawnSync('docker', ['volume', 'rm', '-f', ...vols], { stdio: 'ignore' })
  removeNatChain(name)
  for (const f of [`${name}-site.conf`, `${name}-upstream.conf`, `${name}-upstream.watch.inc`])
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
