// engine: swarm end to end on a single-node Docker Swarm (scripts/swarm.sh: its own engine in a
// network namespace, its own sshd, an overlay network, nginx in a container on it reaching the
// service's tasks by Docker's DNS), 2 replicas, under load through that nginx.
import { execFileSync } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import {
  Load,
  commitVersion,
  expectOk,
  headSha,
  httpGet,
  lastServed,
  makeWorkspace,
  runAction,
  services,
  timelineOf,
  type LoadStats,
  type Services
} from './helpers.js'
import {
  headMessage,
  swarmEnv,
  swarmInputs,
  swarmScript,
  swarmSite
} from '../../scripts/harness/index.mjs'

let svc: Services
let env: Record<string, string>
beforeAll(() => {
  svc = services()
  swarmScript('up')
  env = swarmEnv(svc)
}, 180_000)
afterAll(() => {
  if (!process.env.BGD_KEEP_HOSTS) swarmScript('down')
}, 120_000)

const PORT = 18200
const NAME = 'swarmapp'

function failures(s: LoadStats): string {
  return `${s.requests} requests, ${s.non2xx} non-2xx, ${s.errors} errors, ${s.races} races, slow ${s.slowCompleted}/${s.slowStarted}`
}

describe('engine swarm, 2 replicas behind nginx on the overlay network', () => {
  const url = () => `http://${env.BGD_SWARM_HOST}:${PORT}/`
  let ws: string
  let base: Record<string, string>
  const deploy = (extra: Record<string, string> = {}, opts: object = {}) => {
    const sha = headSha(ws)
    return runAction(
      { ...base, ...extra },
      { workspace: ws, sha, event: { head_commit: { id: sha, message: headMessage(ws) } }, ...opts }
    )
  }
  beforeAll(() => {
    base = {
      ...swarmInputs(svc, env, {
        app: NAME,
        repository: `e2e/swarmapp-${Date.now().toString(36)}`
      }),
      // created from an owner-only file, updated through the docker CLI's environment
      env: 'SWARM_SECRET=never-in-argv with spaces'
    }
    ws = makeWorkspace({ version: 'v1.0.0' }, 'release v1.0.0')
    // nginx reaches the tasks through Docker's resolver, which it asks again every second
    swarmSite(env, NAME, PORT)
  })

  test('first deploy creates the service; a second deploy and a rollback under load: 0 failed, nothing of the old version after convergence', async () => {
    const first = await deploy()
    expectOk(first)
    expect(first.outputs).toMatchObject({ deployed: 'true', version: 'v1.0.0' })
    expect((await httpGet(url())).body).toBe('v1.0.0\n')

    commitVersion({ ws } as never, { version: 'v2.0.0', startDelay: 1 })
    let load = await new Load().start(url())
    // the pre-switch task: a one-off Swarm job on the service's network, with the env
    const second = await deploy({
      env: 'SWARM_SECRET=v2 value',
      'pre-switch-command': `sh -c 'echo "migrated with $SWARM_SECRET"'`
    })
    let stats = await load.stop()
    expectOk(second)
    const converged = timelineOf(second.outputs).switched!
    console.log(
      `swarm v1 -> v2: ${failures(stats)}; v1 last answered ${lastServed(stats, 'v1.0.0') - converged} ms after convergence (the CLI returns after the update monitor); run ${second.ms} ms`
    )
    expect(stats.non2xx + stats.errors + stats.slowFailed).toBe(0)
    // only requests in flight when the last old task left (a slow one takes 3 s) end on v1 after it
    expect(lastServed(stats, 'v1.0.0')).toBeLessThanOrEqual(converged + 3000)
    expect((await httpGet(url())).body).toBe('v2.0.0\n')
    expect((await httpGet(`${url()}cgi-bin/env?SWARM_SECRET`)).body).toBe('v2 value\n')
    expect(second.log).toMatch(/task\| migrated with v2 value/)
    expect(second.log).toMatch(/pre-switch task: done/)
    const t = timelineOf(second.outputs)
    expect(t.tasked).toBeLessThanOrEqual(t.started ?? NaN)

    // the rollback job sets no env: v1 comes back with the env it ran with, from its record
    load = await new Load().start(url())
    const back = await deploy(
      { rollback: 'previous', env: '' },
      { eventName: 'workflow_dispatch', event: { inputs: { rollback: 'previous' } } }
    )
    stats = await load.stop()
    expectOk(back)
    console.log(`swarm rollback to v1: ${failures(stats)}; run ${back.ms} ms`)
    expect(back.outputs).toMatchObject({ deployed: 'true', version: 'v1.0.0' })
    expect(stats.non2xx + stats.errors + stats.slowFailed).toBe(0)
    expect((await httpGet(url())).body).toBe('v1.0.0\n')
    expect(back.log).toMatch(/putting v1\.0\.0 back as it ran: .*env \(1 variable\(s\)\)/)
    expect((await httpGet(`${url()}cgi-bin/env?SWARM_SECRET`)).body).toBe(
      'never-in-argv with spaces\n'
    )
  }, 300_000)

  test('a version that never gets healthy: Swarm rolls back, the run fails naming why, the old version serves throughout', async () => {
    commitVersion({ ws } as never, { version: 'v3.0.0', neverHealthy: true })
    const load = await new Load().start(url())
    const run = await deploy()
    const stats = await load.stop()
    console.log(`swarm, v3 never healthy: ${failures(stats)}; exit ${run.code}; run ${run.ms} ms`)
    expect(run.code).not.toBe(0)
    expect(run.log).toMatch(
      /Swarm rolled the update to \S+:v3\.0\.0 back: update rolled back due to failure or early termination of task \S+ \(a task failed: .*unhealthy container.*\)\. The service runs \S+:v1\.0\.0/
    )
    expect(run.summary).toMatch(/Failed/)
    expect(stats.non2xx + stats.errors + stats.slowFailed).toBe(0)
    expect(stats.versions['v3.0.0']).toBeUndefined()
    expect((await httpGet(url())).body).toBe('v1.0.0\n')
  }, 300_000)

  test('a pre-switch task that fails on Swarm: the run fails with its exit code and last lines, the service is not updated, no job is left', async () => {
    commitVersion({ ws } as never, { version: 'v4.0.0' })
    const load = await new Load().start(url())
    const run = await deploy({
      'pre-switch-command': `sh -c 'echo "relation users has no column x"; exit 5'`
    })
    const stats = await load.stop()
    expect(run.code).toBe(1)
    expect(run.log).toMatch(
      /the pre-switch task .* failed with exit code 5 .*Nothing was changed: The service runs \S+:v1\.0\.0/s
    )
    expect(run.log).toMatch(/relation users has no column x/)
    expect(stats.non2xx + stats.errors + stats.slowFailed).toBe(0)
    expect((await httpGet(url())).body).toBe('v1.0.0\n')
    expect(
      execFileSync('docker', [
        '-H',
        env.BGD_SWARM_DOCKER ?? '',
        'service',
        'ls',
        '--format',
        '{{.Name}}'
      ])
        .toString()
        .split('\n')
        .filter((n) => n.startsWith(`${NAME}-task`))
    ).toEqual([])
  }, 300_000)

  test('workers on Swarm: a service each, updated after the web; the scheduler never twice, the job worker never absent; a worker that fails takes the web back with it', async () => {
    const dk = (...args: string[]) =>
      execFileSync('docker', ['-H', env.BGD_SWARM_DOCKER ?? '', ...args]).toString()
    const tick = `sh -c 'while true; do echo "$(cut -d" " -f1 /proc/uptime) $(hostname)"; sleep 0.2; done'`
    const workers = `jobs: ${tick}\nscheduler single stop-timeout=5: ${tick}`
    commitVersion({ ws } as never, { version: 'v5.0.0' })
    expectOk(await deploy({ workers }))
    commitVersion({ ws } as never, { version: 'v6.0.0', startDelay: 1 })
    const load = await new Load().start(url())
    const run = await deploy({ workers })
    const stats = await load.stop()
    expectOk(run)
    const image = (svc: string) =>
      dk('service', 'inspect', '-f', '{{.Spec.TaskTemplate.ContainerSpec.Image}}', svc).trim()
    for (const svc of [NAME, `${NAME}-jobs`, `${NAME}-scheduler`])
      expect(image(svc)).toMatch(/:v6\.0\.0(@|$)/)
    // the log line of each tick: uptime and the task's container
    const ticksOf = (svc: string) =>
      dk('service', 'logs', '--raw', svc)
        .trim()
        .split('\n')
        .map((l) => l.split(' '))
        .filter((f) => f.length === 2)
        .map(([t, id]) => ({ t: Number(t), id: id! }))
        .sort((a, b) => a.t - b.t)
    const sched = ticksOf(`${NAME}-scheduler`)
    const spans = new Map<string, [number, number]>()
    for (const { t, id } of sched) {
      const x = spans.get(id)
      spans.set(id, x ? [x[0], t] : [t, t])
    }
    const ordered = [...spans.values()].sort((a, b) => a[0] - b[0])
    for (let i = 1; i < ordered.length; i++)
      expect(ordered[i]![0]).toBeGreaterThan(ordered[i - 1]![1])
    const jobs = ticksOf(`${NAME}-jobs`).map((x) => x.t)
    const gap = jobs.slice(1).reduce((g, t, i) => Math.max(g, t - jobs[i]!), 0)
    console.log(
      `swarm workers, v5 -> v6: ${spans.size} scheduler tasks one after the other; longest moment without a job worker ${gap.toFixed(2)} s; ${failures(stats)}; run ${run.ms} ms`
    )
    expect(spans.size).toBe(2)
    expect(gap).toBeLessThan(1)
    expect(stats.non2xx + stats.errors + stats.slowFailed).toBe(0)

    commitVersion({ ws } as never, { version: 'v7.0.0' })
    const bad = await deploy({
      workers: `jobs: sh -c 'echo no queue; exit 4'\nscheduler single: ${tick}`
    })
    expect(bad.code).toBe(1)
    expect(bad.log).toMatch(
      /worker service \S+-jobs: .*non-zero exit \(4\).*Rolled back to their previous version with it: \S+/
    )
    for (const svc of [NAME, `${NAME}-jobs`]) expect(image(svc)).toMatch(/:v6\.0\.0(@|$)/)
    expect((await httpGet(url())).body).toBe('v6.0.0\n')
  }, 400_000)
})

// compose-file on Swarm: the web service's definition (env_file, environment, command, named
// volume, healthcheck, deploy: replicas, update order, limits) becomes the service's; a worker of
// the same build is a service of its own with the same mounts; the rollback puts back the
// settings it ran with.
const COMPOSE_PORT = 18201
const COMPOSE_NAME = 'swarmcompose'
const SWARM_COMPOSE = (memory: string) => `
x-app: &app
  build: .
  env_file: deploy/app.env
  environment:
    GREETING: \${GREETING:-hello from compose}
  volumes: [data:/data]
  labels: { team: shop }
services:
  web:
    <<: *app
    expose: ["8080"]
    command: ["/bin/sh", "-c", "echo from-compose-command > /www/cmd.txt; exec /start.sh"]
    healthcheck:
      test: 'printf ''GET /health HTTP/1.0\\r\\n\\r\\n'' | nc 127.0.0.1 8080 | grep -q '' 200 '''
      interval: 1s
      retries: 3
    stop_grace_period: 10s
    deploy:
      replicas: 2
      update_config: { parallelism: 1, order: start-first, monitor: 3s }
      resources: { limits: { memory: ${memory} } }
  ticker:
    <<: *app
    command: ["/bin/sh", "-c", "while true; do echo \\"$$(hostname) $$GREETING\\" >> /data/ticks; sleep 1; done"]
    stop_grace_period: 2s
volumes:
  data: {}
`

describe('engine swarm with compose-file: the service as the file describes it', () => {
  const url = () => `http://${env.BGD_SWARM_HOST}:${COMPOSE_PORT}/`
  const get = async (p: string) => (await httpGet(`${url()}${p}`)).body.trim()
  const dk = (...args: string[]) =>
    execFileSync('docker', ['-H', env.BGD_SWARM_DOCKER ?? '', ...args]).toString()
  const spec = (svc: string) =>
    JSON.parse(dk('service', 'inspect', '-f', '{{json .Spec}}', svc)) as {
      Mode: { Replicated: { Replicas: number } }
      UpdateConfig: { Order: string; Parallelism: number }
      TaskTemplate: {
        ContainerSpec: {
          Image: string
          Args?: string[]
          Mounts?: { Source: string; Target: string; Type: string }[]
          Labels?: Record<string, string>
        }
        Resources: { Limits?: { MemoryBytes?: number } }
      }
    }
  let ws: string
  let image = ''
  const repository = `e2e/swarmcompose-${Date.now().toString(36)}`
  const ticks = () =>
    dk(
      'run',
      '--rm',
      '-v',
      `${COMPOSE_NAME}_data:/data`,
      '--entrypoint',
      '/bin/cat',
      image,
      '/data/ticks'
    )
      .trim()
      .split('\n')
  const deploy = (extra: Record<string, string> = {}, opts: object = {}) => {
    const sha = headSha(ws)
    return runAction(
      {
        ...swarmInputs(svc, env, {
          app: COMPOSE_NAME,
          repository
        }),
        replicas: '',
        'health-cmd': '',
        'compose-file': 'docker-compose.yml',
        ...extra
      },
      { workspace: ws, sha, event: { head_commit: { id: sha, message: headMessage(ws) } }, ...opts }
    )
  }
  beforeAll(() => {
    ws = makeWorkspace({ version: 'v1.0.0' }, 'release v1.0.0')
    mkdirSync(path.join(ws, 'deploy'), { recursive: true })
    writeFileSync(path.join(ws, 'deploy/app.env'), 'SECRET_KEY=from-env-file\n')
    writeFileSync(path.join(ws, 'docker-compose.yml'), SWARM_COMPOSE('64M'))
    swarmSite(env, COMPOSE_NAME, COMPOSE_PORT)
  })

  test('v1, then v2 with a changed limit under load (0 failed): the settings, the worker with the same volume, its data kept; the rollback puts v1 back with its settings', async () => {
    const first = await deploy()
    expectOk(first)
    expect(await get('')).toBe('v1.0.0')
    let web = spec(COMPOSE_NAME)
    image = web.TaskTemplate.ContainerSpec.Image
    expect(web.Mode.Replicated.Replicas).toBe(2)
    expect(web.UpdateConfig).toMatchObject({ Order: 'start-first', Parallelism: 1 })
    expect(web.TaskTemplate.ContainerSpec.Mounts).toEqual([
      expect.objectContaining({ Type: 'volume', Source: `${COMPOSE_NAME}_data`, Target: '/data' })
    ])
    expect(web.TaskTemplate.ContainerSpec.Labels).toMatchObject({ team: 'shop' })
    expect(web.TaskTemplate.Resources.Limits?.MemoryBytes).toBe(64 * 1024 * 1024)
    expect(await get('cmd.txt')).toBe('from-compose-command')
    expect(await get('cgi-bin/env?SECRET_KEY')).toBe('from-env-file')
    expect(await get('cgi-bin/env?GREETING')).toBe('hello from compose')
    await new Promise((r) => setTimeout(r, 2500))
    const before = ticks()
    expect(before[0]).toMatch(/ hello from compose$/)

    commitVersion({ ws } as never, { version: 'v2.0.0', startDelay: 1 })
    writeFileSync(path.join(ws, 'docker-compose.yml'), SWARM_COMPOSE('96M'))
    const load = await new Load().start(url())
    const second = await deploy({}, { env: { GREETING: 'hello from the runner' } })
    const stats = await load.stop()
    console.log(`swarm compose, v1 -> v2: ${failures(stats)}; run ${second.ms} ms`)
    expectOk(second)
    expect(stats.non2xx + stats.errors + stats.slowFailed).toBe(0)
    expect(await get('')).toBe('v2.0.0')
    expect(await get('cgi-bin/env?GREETING')).toBe('hello from the runner')
    expect(await get('cmd.txt')).toBe('from-compose-command')
    web = spec(COMPOSE_NAME)
    expect(web.TaskTemplate.Resources.Limits?.MemoryBytes).toBe(96 * 1024 * 1024)
    expect(web.TaskTemplate.ContainerSpec.Mounts).toHaveLength(1)
    const worker = spec(`${COMPOSE_NAME}-ticker`)
    expect(worker.TaskTemplate.ContainerSpec.Image).toMatch(/:v2\.0\.0(@|$)/)
    expect(worker.TaskTemplate.ContainerSpec.Mounts).toEqual(web.TaskTemplate.ContainerSpec.Mounts)
    // the worker's own: one task (not the web's replicas), its command
    expect(worker.Mode.Replicated.Replicas).toBe(1)
    await new Promise((r) => setTimeout(r, 2500))
    const after = ticks()
    expect(after.slice(0, before.length)).toEqual(before)
    expect(after.at(-1)).toMatch(/ hello from the runner$/)

    const back = await deploy(
      { rollback: 'previous' },
      { eventName: 'workflow_dispatch', event: { inputs: { rollback: 'previous' } } }
    )
    expectOk(back)
    expect(await get('')).toBe('v1.0.0')
    expect(await get('cgi-bin/env?GREETING')).toBe('hello from compose')
    expect(spec(COMPOSE_NAME).TaskTemplate.Resources.Limits?.MemoryBytes).toBe(64 * 1024 * 1024)
    expect(spec(`${COMPOSE_NAME}-ticker`).TaskTemplate.ContainerSpec.Image).toMatch(
      /:v1\.0\.0(@|$)/
    )
  }, 400_000)
})
