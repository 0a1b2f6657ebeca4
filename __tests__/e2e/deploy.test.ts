// Issue 3 end to end: SSH + the blue-green script against real sshd, dockerd, registry and nginx,
// with a load generator running during deploys.
import {
  Load,
  appContainers,
  commitVersion,
  deployApp,
  expectOk,
  httpGet,
  newApp,
  removeApp,
  services,
  type Services,
  type TestApp
} from './helpers.js'

let svc: Services
const apps: TestApp[] = []
beforeAll(() => {
  svc = services()
})
afterAll(() => {
  for (const app of apps) removeApp(svc, app)
})
function app(prefix: string, version = 'v1.0.0', extra: Record<string, string> = {}): TestApp {
  const a = newApp(svc, prefix, { version }, extra)
  apps.push(a)
  return a
}

test('first deploy on a bare server, then v1 → v2 under load with 0 failed requests', async () => {
  const a = app('zd')
  const first = await deployApp(a)
  expectOk(first)
  expect(first.outputs).toMatchObject({
    deployed: 'true',
    color: 'blue',
    'previous-color': '',
    version: 'v1.0.0'
  })
  expect((await httpGet(a.url)).body).toBe('v1.0.0\n')

  commitVersion(a, { version: 'v2.0.0', startDelay: 2 })
  const load = await new Load().start(a.url)
  const run = await deployApp(a)
  const stats = await load.stop()
  expectOk(run)
  console.log('v1 -> v2 under load', JSON.stringify({ ms: run.ms, stats }))
  expect(run.outputs).toMatchObject({
    deployed: 'true',
    color: 'green',
    'previous-color': 'blue',
    version: 'v2.0.0'
  })
  expect(stats.non2xx).toBe(0)
  expect(stats.errors).toBe(0)
  expect(stats.slowFailed).toBe(0)
  expect(stats.slowCompleted).toBeGreaterThan(0)
  expect(stats.versions['v2.0.0']!.count).toBeGreaterThan(0)
  expect((await httpGet(a.url)).body).toBe('v2.0.0\n')
  expect(appContainers(a)).toEqual({ [`${a.name}-green`]: 'running', [`${a.name}-blue`]: 'exited' })
}, 180_000)
