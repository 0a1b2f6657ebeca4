// After the switch, end to end under load: the watch window switches a bad release back by
// itself, a good one passes it, keep-warm makes a rollback a switch only, and long-lived
// connections ride through a dnat switch.
import { readFileSync, writeFileSync } from 'node:fs'
import { get } from 'node:http'
import path from 'node:path'
import {
  FakeGitHub,
  Load,
  appContainers,
  appFixture,
  commitVersion,
  deployApp,
  expectOk,
  historyRows,
  httpGet,
  rollbackApp,
  settled,
  sleep,
  timelineOf,
  type TestApp
} from './helpers.js'

const fixture = appFixture()
let github: FakeGitHub
beforeAll(async () => {
  github = await new FakeGitHub().start()
})
afterAll(async () => {
  await github.stop()
})

describe('watch window', () => {
  let a: TestApp
  beforeAll(async () => {
    a = fixture.newApp('watch', { version: 'v1.0.0' }, { 'create-release': 'true' })
    expectOk(await deployApp(a, { apiUrl: github.url }))
    settled(a)
  }, 120_000)

  test('a release that answers 500 to 3 requests in 10, 5 s after it became healthy, is switched back within the window; the run fails with the figures; the release stays a draft', async () => {
    commitVersion(a, { version: 'v2.0.0', failsLater: { after: 5, inTen: 3 } })
    const load = await new Load().start(a.url)
    const run = await deployApp(a, { apiUrl: github.url, inputs: { watch: '20' } })
    await sleep(500)
    const stats = await load.stop()
    const t = timelineOf(run.outputs)
    console.log(
      `watch, bad release: ${stats.requests} requests, ${stats.non2xx} answered 500 by v2 before the switch back (${stats.errors} connection errors); v2 began failing ${(stats.t0 + ((stats.failures[0] as { t: number } | undefined)?.t ?? NaN) - (t.switched ?? NaN)) / 1000} s after the switch and was switched back ${((t.reverted ?? NaN) - (t.switched ?? NaN)) / 1000} s after it; run ${run.ms} ms, exit ${run.code}: ${/the watch window switched back[^\n]*/.exec(run.log)?.[0]}`
    )
    expect(run.code).not.toBe(0)
    expect(run.log).toMatch(
      /the watch window switched back from v2\.0\.0: \d+ of its \d+ answers were 5xx, more than 1 %; in [\d.]+ s after the switch nginx answered \d+ request\(s\) for it/
    )
    expect(run.summary).toMatch(/Failed.*the watch window switched back/s)
    // within the window, and not before the app began failing
    const firstBad = stats.t0 + ((stats.failures[0] as { t: number } | undefined)?.t ?? NaN)
    expect((t.reverted ?? NaN) - (t.switched ?? NaN)).toBeLessThan(20_000)
    expect(t.reverted).toBeGreaterThan(firstBad)
    expect(stats.errors).toBe(0)
    expect(stats.non2xx).toBeGreaterThan(0)
    expect(Object.keys(stats.statuses).sort()).toEqual(['200', '500'])
    expect((await httpGet(a.url)).body).toBe('v1.0.0\n')
    expect(historyRows(a).at(-1)).toEqual(
      expect.arrayContaining(['deploy', 'v2.0.0', 'rolled-back-after-watch'])
    )
    const release = github.releases.find((r) => r.tag_name === 'v2.0.0')
    expect(release?.draft).toBe(true)
    settled(a)
    // the bad one is stopped and kept for its logs
    expect(appContainers(a)[`${a.name}-${run.outputs.color || 'green'}`]).toBe('exited')
  }, 180_000)

  test('a good release passes a 20 s window and the run succeeds, 0 failed', async () => {
    commitVersion(a, { version: 'v3.0.0' })
    const load = await new Load().start(a.url)
    const run = await deployApp(a, { apiUrl: github.url, inputs: { watch: '20' } })
    const stats = await load.stop()
    expectOk(run)
    const t = timelineOf(run.outputs)
    console.log(
      `watch, good release: ${stats.requests} requests, ${stats.non2xx} non-2xx, ${stats.errors} errors; watched ${((t.watched ?? NaN) - (t.switched ?? NaN)) / 1000} s; run ${run.ms} ms`
    )
    expect(run.outputs).toMatchObject({ deployed: 'true', version: 'v3.0.0' })
    expect((t.watched ?? NaN) - (t.switched ?? NaN)).toBeGreaterThanOrEqual(20_000)
    expect(stats.non2xx + stats.errors + stats.slowFailed).toBe(0)
    expect(run.log).toMatch(
      /the watch passed: in 2\d\.\d s after the switch nginx answered \d+ request/
    )
    expect(github.releases.find((r) => r.tag_name === 'v3.0.0')?.draft).toBe(false)
    settled(a)
  }, 180_000)
})

describe("the watch sees nginx's answers however the site logs", () => {
  test("a server block with an access_log of its own: refused before anything changes, with the include to add; with it, a degrading version is switched back and the site's own log still gets every answer", async () => {
    const a = fixture.newApp('perlog', { version: 'v1.0.0' })
    const confd = fixture.services().nginxConfd
    const site = path.join(confd, `${a.name}-site.conf`)
    const siteLog = path.join(fixture.services().dir, `${a.name}-site.log`)
    const own = (extra: string) =>
      writeFileSync(
        site,
        `server {\n  listen 127.0.0.1:${a.lbPort};\n  access_log ${siteLog};\n${extra}  location / { proxy_pass http://${a.name}; }\n}\n`
      )
    own('')
    expectOk(await deployApp(a))
    settled(a)
    commitVersion(a, { version: 'v2.0.0', failsLater: { after: 3, inTen: 5 } })
    let load = await new Load().start(a.url)
    const refused = await deployApp(a, { inputs: { watch: '20' } })
    let stats = await load.stop()
    const include = path.join(confd, `${a.name}-upstream.watch.inc`)
    console.log(
      `watch, per-site access_log: refused with exit ${refused.code}: ${/the watch would not see[^\n]*/.exec(refused.log)?.[0]}; ${stats.requests} requests, ${stats.non2xx + stats.errors + stats.slowFailed} failed`
    )
    expect(refused.code).not.toBe(0)
    expect(refused.log).toContain(
      `the watch would not see nginx's answers for ${a.name}, so it refuses before changing anything: The server block at ${site}:1 has access_log directives of its own, so it does not inherit the watch's log: add 'include ${include};' in it.`
    )
    expect(appContainers(a)).toEqual({ [`${a.name}-blue`]: 'running' })
    expect(stats.non2xx + stats.errors + stats.slowFailed).toBe(0)
    expect((await httpGet(a.url)).body).toBe('v1.0.0\n')
    // the file to include is there already, so adding the line keeps nginx -t passing
    expect(readFileSync(include, 'utf8')).toMatch(/^# Managed by bg-deploy/)
    own(`  include ${include};\n`)
    const linesBefore = readFileSync(siteLog, 'utf8').split('\n').length
    load = await new Load().start(a.url)
    const run = await deployApp(a, { inputs: { watch: '20' } })
    await sleep(500)
    stats = await load.stop()
    const t = timelineOf(run.outputs)
    console.log(
      `watch, per-site access_log with the include: ${stats.requests} requests, ${stats.non2xx} answered 500 by v2, ${stats.errors} connection errors; switched back ${((t.reverted ?? NaN) - (t.switched ?? NaN)) / 1000} s after the switch: ${/the watch window switched back[^\n]*/.exec(run.log)?.[0]}`
    )
    expect(run.code).not.toBe(0)
    expect(run.log).toMatch(/the watch will see nginx's answers for \S+ \(through \S+watch\.inc/)
    expect(run.log).toMatch(
      /the watch window switched back from v2\.0\.0: \d+ of its \d+ answers were 5xx/
    )
    expect(stats.errors).toBe(0)
    expect((await httpGet(a.url)).body).toBe('v1.0.0\n')
    // the site's own log lost nothing: it holds a line for every request of the load
    const linesAfter = readFileSync(siteLog, 'utf8').split('\n').length
    expect(linesAfter - linesBefore).toBeGreaterThanOrEqual(stats.requests)
    settled(a)
  }, 240_000)

  test("access_log off in the site's location: refused before anything changes; watch-health-only: true is the way to go on without nginx's answers", async () => {
    const a = fixture.newApp('logoff', { version: 'v1.0.0' })
    const site = path.join(fixture.services().nginxConfd, `${a.name}-site.conf`)
    writeFileSync(
      site,
      `server {\n  listen 127.0.0.1:${a.lbPort};\n  location / {\n    access_log off;\n    proxy_pass http://${a.name};\n  }\n}\n`
    )
    expectOk(await deployApp(a))
    settled(a)
    commitVersion(a, { version: 'v2.0.0' })
    const refused = await deployApp(a, { inputs: { watch: '5' } })
    expect(refused.code).not.toBe(0)
    expect(refused.log).toContain(
      `'access_log off' in the location block at ${site}:4 turns off every log there, the watch's too (it proxies to ${a.name} at ${site}:3)`
    )
    expect(refused.log).toContain('Or set watch-health-only: true')
    expect(appContainers(a)).toEqual({ [`${a.name}-blue`]: 'running' })
    const run = await deployApp(a, { inputs: { watch: '3', 'watch-health-only': 'true' } })
    expectOk(run)
    expect(run.log).toMatch(/watch-health-only: the watch checks \/ only, not nginx's answers/)
    expect((await httpGet(a.url)).body).toBe('v2.0.0\n')
    settled(a)
  }, 180_000)
})

describe('the watch compares with the version it replaces', () => {
  test('a version as flaky as its predecessor (1 answer in 10 is a 500) passes; a worse one is switched back, with both shares in the message and the summary', async () => {
    const a = fixture.newApp(
      'flaky',
      { version: 'v1.0.0', failsLater: { after: 0, inTen: 1 } },
      // the health path stays fine; 3 points of margin: two samples of a 10 % rate differ by
      // about a point at the counts of this test
      { 'health-path': '/health', 'watch-max-error-rate': '3' }
    )
    expectOk(await deployApp(a))
    settled(a)
    commitVersion(a, { version: 'v2.0.0', failsLater: { after: 0, inTen: 1 } })
    let load = await new Load().start(a.url)
    const same = await deployApp(a, { inputs: { watch: '10' } })
    let stats = await load.stop()
    console.log(
      `watch, as flaky as before: exit ${same.code}, ${stats.requests} requests, ${stats.non2xx} 500s (${((stats.non2xx * 100) / stats.requests).toFixed(1)} %), ${stats.errors} errors: ${/the watch passed: [^\n]*/.exec(same.log)?.[0]}`
    )
    expectOk(same)
    expect(same.log).toMatch(
      /the watch passed: in \d+\.\d s after the switch nginx answered \d+ request\(s\) for it, \d+ of them 5xx \(\d+\.\d %\); before the switch the previous version answered \d+ request\(s\), \d+ of them 5xx \(\d+\.\d %\); limit 1\d(\.\d)? %/
    )
    expect(same.summary).toMatch(
      /passed: the new version \d+ of \d+ answers 5xx \(\d+\.\d %\); the version it replaced, just before the switch, \d+ of \d+ answers 5xx/
    )
    expect(stats.errors).toBe(0)
    settled(a)
    commitVersion(a, { version: 'v3.0.0', failsLater: { after: 3, inTen: 4 } })
    load = await new Load().start(a.url)
    const worse = await deployApp(a, { inputs: { watch: '20' } })
    await sleep(500)
    stats = await load.stop()
    console.log(
      `watch, worse than before: exit ${worse.code}; ${stats.requests} requests, ${stats.errors} errors: ${/the watch window switched back[^\n]*/.exec(worse.log)?.[0]}`
    )
    expect(worse.code).not.toBe(0)
    expect(worse.log).toMatch(
      /the watch window switched back from v3\.0\.0: \d+ of its \d+ answers were 5xx, more than 1\d(\.\d)? % \(the previous version's \d+\.\d % \+ 3\)/
    )
    expect(stats.errors).toBe(0)
    expect((await httpGet(a.url)).body).toMatch(/^v2\.0\.0/)
    settled(a)
  }, 240_000)
})

describe('keep-warm', () => {
  test('the old color runs on after the deploy; a rollback within keep-warm is a switch only; it stops by itself when the time is up', async () => {
    const a = fixture.newApp('warm', { version: 'v1.0.0' })
    expectOk(await deployApp(a))
    settled(a)
    commitVersion(a, { version: 'v2.0.0', startDelay: 2 })
    const deploy = await deployApp(a, { inputs: { 'keep-warm': '60' } })
    expectOk(deploy)
    settled(a)
    expect(appContainers(a)).toEqual({
      [`${a.name}-blue`]: 'running',
      [`${a.name}-green`]: 'running'
    })
    const load = await new Load().start(a.url)
    const back = await rollbackApp(a, 'previous', { 'keep-warm': '3' })
    const stats = await load.stop()
    expectOk(back)
    const t = timelineOf(back.outputs)
    console.log(
      `keep-warm rollback: previous version switched to ${(t.switched ?? NaN) - (t.begin ?? NaN)} ms after the script began; ${stats.non2xx + stats.errors} failed`
    )
    expect(back.log).toMatch(/running still \(kept warm\): a switch only/)
    expect(back.outputs).toMatchObject({ version: 'v1.0.0', color: 'blue' })
    expect(stats.non2xx + stats.errors).toBe(0)
    // v2 stays warm for 3 s, then stops by itself, while the lock is free meanwhile
    settled(a)
    expect(appContainers(a)[`${a.name}-green`]).toBe('running')
    await sleep(5000)
    settled(a)
    expect(appContainers(a)).toEqual({
      [`${a.name}-blue`]: 'running',
      [`${a.name}-green`]: 'exited'
    })
  }, 180_000)
})

/** A streaming GET: resolves with the lines received and how it ended. */
function stream(url: string): Promise<{ lines: string[]; error?: string }> {
  return new Promise((resolve) => {
    let body = ''
    const req = get(url, { agent: false }, (res) => {
      res.on('data', (d) => (body += d))
      res.on('end', () => resolve({ lines: body.trim().split('\n') }))
      res.on('error', (e) => resolve({ lines: body.trim().split('\n'), error: e.message }))
    })
    req.on('error', (e) => resolve({ lines: body.trim().split('\n'), error: e.message }))
  })
}

describe('long-lived connections in dnat mode', () => {
  test('50 streams open across a switch keep streaming to their end with no reset; new requests reach the new color', async () => {
    const a = fixture.newApp(
      'stream',
      { version: 'v1.0.0' },
      { 'switch-mode': 'dnat', 'drain-timeout': '60' }
    )
    expectOk(await deployApp(a))
    settled(a)
    commitVersion(a, { version: 'v2.0.0' })
    const streams = Array.from({ length: 50 }, () => stream(`${a.url}cgi-bin/stream?20`))
    await sleep(3000)
    const run = await deployApp(a)
    expectOk(run)
    const after = await httpGet(a.url)
    const ended = await Promise.all(streams)
    const t = timelineOf(run.outputs)
    console.log(
      `dnat, 50 streams across the switch: ${ended.filter((s) => !s.error && s.lines.length === 20).length} of 50 complete; drain ${((t.drained ?? NaN) - (t.switched ?? NaN)) / 1000} s`
    )
    expect(after.body).toBe('v2.0.0\n')
    for (const s of ended) {
      expect(s.error).toBeUndefined()
      expect(s.lines).toEqual(Array.from({ length: 20 }, (_, i) => `v1.0.0 ${i}`))
    }
    expect(run.summary).not.toMatch(/still open on the old color/)
  }, 180_000)

  test('streams longer than drain-timeout: the summary says how many were still open when the old color stopped', async () => {
    const a = fixture.newApp(
      'cut',
      { version: 'v1.0.0' },
      { 'switch-mode': 'dnat', 'drain-timeout': '3' }
    )
    expectOk(await deployApp(a))
    settled(a)
    commitVersion(a, { version: 'v2.0.0' })
    const streams = Array.from({ length: 10 }, () => stream(`${a.url}cgi-bin/stream?30`))
    await sleep(2000)
    const run = await deployApp(a)
    expectOk(run)
    console.log(
      `dnat, drain-timeout 3 s with 10 streams of 30 s: ${run.summary.match(/\d+ still open[^<]*/)?.[0]}`
    )
    expect(run.summary).toMatch(/10 still open on the old color when it stopped \(drain-timeout\)/)
    await Promise.all(streams)
  }, 180_000)
})
