import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { escapeHtml, writeSummary } from '../src/summary.js'

test('server data in the job summary is escaped, never interpreted as HTML', async () => {
  const file = path.join(mkdtempSync(path.join(tmpdir(), 'bgd-sum-')), 'summary.md')
  writeFileSync(file, '')
  process.env.GITHUB_STEP_SUMMARY = file
  try {
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
  } finally {
    delete process.env.GITHUB_STEP_SUMMARY
  }
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
