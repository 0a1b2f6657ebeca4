// Canary steps on one server, end to end under load: a share of the clients (told apart by the
// load's X-Client header) reaches the new version, sticky per client, step by step; a bad version
// is switched back during the first step, having hurt only its share of the clients.
import {
  Load,
  appContainers,
  appFixture,
  commitVersion,
  deployApp,
  expectOk,
  historyRows,
  httpGet,
  settled,
  sleep,
  timelineOf,
  type TestApp
} from './helpers.js'

const fixture = appFixture()
const CANARY = { canary: '10,50', 'canary-key': '$http_x_client' }

describe('canary steps on one server', () => {
  let a: TestApp
  beforeAll(async () => {
    a = fixture.newApp('canary', { version: 'v1.0.0' }, { 'health-path': '/health' })
    expectOk(await deployApp(a))
    settled(a)
  }, 120_000)

  test('a good version: 10 % then 50 % of the clients, each staying on its version, then the full switch and the watch; 0 failed', async () => {
    commitVersion(a, { version: 'v2.0.0' })
    const load = await new Load().start(a.url, { clientIds: 2000 })
    const run = await deployApp(a, {
      inputs: { ...CANARY, 'canary-step-time': '8', watch: '4' }
    })
    const stats = await load.stop()
    expectOk(run)
    const t = timelineOf(run.outputs)
    const step = 8000
    // each step's answers, clear of the reloads at its edges: nginx's replaced workers answer
    // with the step before for as long as they live (3 s, the slow clients' requests)
    const inStep = (i: number) => {
      const from = (t.canary ?? NaN) + i * step + 3500 - stats.t0
      const to = (t.canary ?? NaN) + (i + 1) * step - 500 - stats.t0
      const seen = new Map<string, Set<string>>()
      for (const [id, answers] of Object.entries(stats.clients))
        for (const [at, v] of answers)
          if (at >= from && at < to) seen.set(id, (seen.get(id) ?? new Set()).add(v))
      return seen
    }
    const share = (seen: Map<string, Set<string>>) =>
      [...seen.values()].filter((s) => s.has('v2.0.0')).length / seen.size
    const one = inStep(0)
    const two = inStep(1)
    console.log(
      `canary, good version: ${stats.requests} requests, ${stats.non2xx + stats.errors + stats.slowFailed} failed; clients on v2: ${(share(one) * 100).toFixed(1)} % of ${one.size} in step 1, ${(share(two) * 100).toFixed(1)} % of ${two.size} in step 2; switched ${((t.switched ?? NaN) - (t.canary ?? NaN)) / 1000} s after the canary began; run ${run.ms} ms`
    )
    expect(stats.non2xx + stats.errors + stats.slowFailed).toBe(0)
    expect(run.log).toMatch(/nginx sends 10 % of clients \(by \$http_x_client\) to \S+-green/)
    expect(run.log).toMatch(
      /canary step passed: at 50 % of clients, in \d+\.\d s the new version answered \d+ request/
    )
    expect(run.log).toMatch(/the watch passed/)
    // the shares, within sampling: about a tenth, then about half
    expect(share(one)).toBeGreaterThan(0.05)
    expect(share(one)).toBeLessThan(0.16)
    expect(share(two)).toBeGreaterThan(0.42)
    expect(share(two)).toBeLessThan(0.58)
    // sticky: within a step a client got one version; one on v2 at 10 % stayed on it at 50 %
    for (const seen of [one, two]) for (const s of seen.values()) expect(s.size).toBe(1)
    for (const [id, s] of one)
      if (s.has('v2.0.0')) expect([...(two.get(id) ?? ['v2.0.0'])]).toEqual(['v2.0.0'])
    expect((t.switched ?? NaN) - (t.canary ?? NaN)).toBeGreaterThanOrEqual(2 * step)
    expect((await httpGet(a.url)).body).toBe('v2.0.0\n')
    settled(a)
  }, 180_000)

  test('a version that answers 500 to every request: switched back in the first step, every client on the old version in one write; only about a tenth of the answers failed meanwhile', async () => {
    commitVersion(a, { version: 'v3.0.0', failsLater: { after: 0, inTen: 10 } })
    const load = await new Load().start(a.url, { clientIds: 2000 })
    const run = await deployApp(a, {
      inputs: { ...CANARY, 'canary-step-time': '20', watch: '10' }
    })
    await sleep(500)
    const stats = await load.stop()
    const t = timelineOf(run.outputs)
    const during = ((t.reverted ?? NaN) - (t.canary ?? NaN)) / 1000
    console.log(
      `canary, bad version: ${stats.requests} requests, ${stats.non2xx} answered 500 by v3 (${stats.errors} connection errors); switched back ${during} s after the canary began: ${/the canary switched back[^\n]*/.exec(run.log)?.[0]}`
    )
    expect(run.code).not.toBe(0)
    expect(run.log).toMatch(
      /the canary switched back from v3\.0\.0: \d+ of its \d+ answers were 5xx, more than the old version's [\d.]+ % \+ 1 beyond chance; at 10 % of clients/
    )
    expect(run.log).not.toMatch(/nginx sends 50 % of clients/)
    expect(t.switched).toBeUndefined()
    expect(during).toBeLessThan(20)
    expect(stats.errors).toBe(0)
    expect(stats.non2xx).toBeGreaterThan(0)
    expect(Object.keys(stats.statuses).sort()).toEqual(['200', '500'])
    expect((await httpGet(a.url)).body).toBe('v2.0.0\n')
    expect(historyRows(a).at(-1)).toEqual(
      expect.arrayContaining(['deploy', 'v3.0.0', 'rolled-back-after-canary'])
    )
    settled(a)
    expect(appContainers(a)).toEqual({
      [`${a.name}-green`]: 'running',
      [`${a.name}-blue`]: 'exited'
    })
  }, 180_000)
})
