import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { HtmlRenderer, Parser } from 'commonmark'
import { durations, escapeHtml, servingNow, timelineBars, writeSummary } from '../src/summary.js'

// @actions/core keeps the summary file's path once it has read it: one file for the whole file
const file = path.join(mkdtempSync(path.join(tmpdir(), 'bgd-sum-')), 'summary.md')
beforeEach(() => {
  writeFileSync(file, '')
  process.env.GITHUB_STEP_SUMMARY = file
})
afterEach(() => delete process.env.GITHUB_STEP_SUMMARY)

test('server data in the job summary is escaped, never interpreted as HTML', async () => {
  await writeSummary({
    tags: ['r:v1'],
    deployed: true,
    color: 'blue',
    version: 'v1',
    releaseUrl: 'https://github.com/acme/shop/releases/tag/untagged-1',
    releaseDraft: true,
    events: [{ name: 'begin', ms: 1 }],
    history: [
      {
        time: '<img src=x onerror=alert(1)>',
        actor: '"><script>x</script>',
        runUrl: '-',
        action: 'deploy',
        version: "v1'",
        image: 'r:v1',
        color: 'blue',
        result: 'ok&more'
      }
    ]
  })
  const html = readFileSync(file, 'utf8')
  expect(html).not.toMatch(/<img|<script/)
  expect(html).toContain('&lt;img src=x onerror=alert(1)&gt;')
  expect(html).toContain('&quot;&gt;&lt;script&gt;x&lt;/script&gt;')
  expect(html).toContain('ok&amp;more')
  expect(html).toMatch(/draft, not published: the new version did not serve/)
})

test('escapeHtml escapes the five characters', () => {
  expect(escapeHtml(`<a href="x">'&'</a>`)).toBe(
    '&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;'
  )
})

test('a failed run: the summary says what failed, during which step, and what serves now', async () => {
  await writeSummary({
    tags: [],
    deployed: false,
    events: [{ name: 'sent', ms: 1 }],
    error: 'shop-green did not answer 2xx on /healthz within 60s',
    failedPhase: 'srv: health shop-green',
    serving: { color: 'blue', version: 'v1.3.0' }
  })
  const html = readFileSync(file, 'utf8')
  expect(html).toContain('<td>Failed during</td><td>srv: health shop-green</td>')
  expect(html).toContain(
    '<td>Serving now</td><td>v1.3.0 (blue), as the server&#39;s state says</td>'
  )
})

test('serving now, when the server did not say', () => {
  const o = { tags: [], deployed: false, events: [] }
  expect(servingNow({ ...o })).toMatch(/^unchanged: the run stopped before the server/)
  expect(servingNow({ ...o, events: [{ name: 'sent' as const, ms: 1 }] })).toMatch(/^unknown/)
})

test("the runner's durations: build, push, draft release", () => {
  const events = (
    [
      ['build', 1000],
      ['release', 1100],
      ['drafted', 1400],
      ['built', 13400],
      ['pushed', 14650]
    ] as const
  ).map(([name, ms]) => ({ name, ms }))
  expect(durations({ tags: [], deployed: true, events })).toEqual([
    'build: 12.40 s',
    'push: 1.25 s',
    'draft release: 0.30 s'
  ])
})

test('foreign text cannot render as markdown: rendered as GitHub would (CommonMark), the summary has only the links and headings the action wrote', async () => {
  const hostile = [
    'nginx failed',
    '',
    '# You have been pwned',
    '',
    '[click to fix](https://evil.example/fix) ![x](https://evil.example/track.png)',
    '',
    '<https://evil.example/auto>',
    '   ',
    '## Serving now: nothing'
  ].join('\n')
  await writeSummary({
    tags: ['r:v1'],
    deployed: false,
    version: 'v1',
    releaseUrl: 'https://github.com/acme/shop/releases/tag/v1',
    events: [{ name: 'begin', ms: 1 }],
    error: `The deploy script failed. Last output:\n${hostile}`,
    failedPhase: `h: health\r\n\r\n[x](https://evil.example)`,
    servers: [{ name: 'a', role: 'host', state: 'failed', error: hostile }]
  })
  const md = readFileSync(file, 'utf8')
  const html = new HtmlRenderer().render(new Parser().parse(md))
  expect([...html.matchAll(/<a [^>]*>/g)].map((m) => m[0])).toEqual([
    '<a href="https://github.com/acme/shop/releases/tag/v1">'
  ])
  expect(html).not.toMatch(/<img|evil\.example\/fix"|<h1|<p>/)
  expect([...html.matchAll(/<h(\d)>([^<]*)</g)].map((m) => `${m[1]} ${m[2]}`)).toEqual([
    '2 bg-deploy',
    '3 Timeline',
    '3 Servers'
  ])
  // the control: the same text on its own does render as markdown
  const plain = new HtmlRenderer().render(new Parser().parse(hostile))
  expect(plain).toMatch(/<h1>You have been pwned<\/h1>/)
  expect(plain).toMatch(/<a href="https:\/\/evil.example\/fix">/)
  expect(plain).toMatch(/<img src="https:\/\/evil.example\/track.png"/)
})

test("a watched deploy: the summary gives both versions' shares of 5xx", async () => {
  await writeSummary({
    tags: ['r:v2'],
    deployed: true,
    color: 'green',
    previousColor: 'blue',
    version: 'v2',
    events: [],
    watch: { total: 2000, bad: 40, baseTotal: 500, baseBad: 10 }
  })
  expect(readFileSync(file, 'utf8')).toContain(
    'passed: the new version 40 of 2000 answers 5xx (2.0 %); the version it replaced, just before the switch, 10 of 500 answers 5xx (2.0 %)'
  )
})

test('the timeline at a glance: each step a bar from the step before to its own time, across the run', () => {
  expect(timelineBars([1000, 1000, 2000, 5000], 8)).toEqual([
    '█░░░░░░░',
    '█░░░░░░░',
    '██░░░░░░',
    '░░██████'
  ])
})
