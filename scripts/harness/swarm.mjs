// The single-node swarm of scripts/swarm.sh: the script, its settings, a site, the inputs.
import { spawnSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import path from 'node:path'
import { ROOT, readEnvFile } from './services.mjs'

// The single-node swarm of scripts/swarm.sh: the script, its settings, a site, the inputs.

/** @param {'up' | 'down' | 'reload'} what */
export function swarmScript(what) {
  const r = spawnSync('bash', [path.join(ROOT, 'scripts/swarm.sh'), what], { encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`scripts/swarm.sh ${what} failed: ${r.stderr}`)
}

/**
 * The settings scripts/swarm.sh wrote.
 * @param {import('./services.mjs').Services} svc
 * @returns {Record<string, string>}
 */
export function swarmEnv(svc) {
  return readEnvFile(path.join(svc.dir, 'swarm/swarm.env'))
}

/**
 * nginx's site for a Swarm app, in the front container on the overlay network, then reloaded.
 * @param {Record<string, string>} env
 * @param {string} app
 * @param {number} port one of 18200-18209
 */
export function swarmSite(env, app, port) {
  writeFileSync(
    path.join(env.BGD_SWARM_FRONT ?? '', 'conf.d', `${app}.conf`),
    `server {\n  listen ${port};\n  location / {\n    set $tasks tasks.${app};\n    proxy_pass http://$tasks:8080;\n    proxy_next_upstream error timeout http_502 http_503;\n  }\n}\n`
  )
  swarmScript('reload')
}

/**
 * The inputs that deploy `app` to the swarm.
 * @param {import('./services.mjs').Services} svc
 * @param {Record<string, string>} env
 * @param {{ app: string, repository: string }} o
 */
export function swarmInputs(svc, env, o) {
  return {
    image: `${svc.registry}/${o.repository}`,
    'create-release': 'false',
    engine: 'swarm',
    host: env.BGD_SWARM_HOST ?? '',
    username: 'root',
    'ssh-key': svc.sshKey,
    'host-fingerprint': env.BGD_SWARM_FINGERPRINT ?? '',
    'app-name': o.app,
    replicas: '2',
    network: env.BGD_SWARM_NETWORK ?? '',
    'health-cmd': "printf 'GET /health HTTP/1.0\\r\\n\\r\\n' | nc 127.0.0.1 8080 | grep -q ' 200 '",
    'health-interval': '1',
    'health-timeout': '10',
    'drain-timeout': '10',
    watch: '3'
  }
}
