// engine: swarm end to end on a single-node Docker Swarm (scripts/swarm.sh: its own engine in a
// network namespace, its own sshd, an overlay network, nginx in a container on it reaching the
// service's tasks by Docker's DNS), 2 replicas, under load through that nginx.
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
    const second = await deploy({ env: 'SWARM_SECRET=v2 value' })
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
})
