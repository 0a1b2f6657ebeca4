// A picture of a real job summary for docs/: the summary a run of the action bundle wrote (the
// demo's v2.0.0 deploy keeps its own), rendered as markdown the way GitHub renders a job summary,
// in GitHub's light colors, and photographed by headless Chromium (Debian's `chromium`).
//   npm run demo && node scripts/summary-picture.mjs [SUMMARY.md] [OUT.png]
// Defaults: the demo's summary in $BGD_SERVICES_DIR, docs/summary.png.
import { spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { HtmlRenderer, Parser } from 'commonmark'

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..')
const services = process.env.BGD_SERVICES_DIR ?? '/tmp/bg-deploy-services'
const input = process.argv[2] ?? path.join(services, 'demo-summary.md')
const out = path.resolve(process.argv[3] ?? path.join(ROOT, 'docs', 'summary.png'))
const WIDTH = 820

if (!existsSync(input)) {
  console.error(
    `${input} is missing: run npm run demo first (it keeps the v2.0.0 deploy's summary)`
  )
  process.exit(1)
}
const markdown = readFileSync(input, 'utf8')
const body = new HtmlRenderer().render(new Parser().parse(markdown))

// the job summary panel as GitHub draws it: the step's name above, the rendered markdown below
const page = `<!doctype html><meta charset="utf-8"><style>
  body { margin: 0; background: #f6f8fa; font: 14px/1.5 "DejaVu Sans", sans-serif; color: #1f2328; }
  .panel { margin: 16px; background: #fff; border: 1px solid #d1d9e0; border-radius: 6px; }
  .head { padding: 10px 16px; border-bottom: 1px solid #d1d9e0; font-weight: 600; }
  .body { padding: 8px 16px 16px; }
  h2 { font-size: 20px; border-bottom: 1px solid #d1d9e0; padding-bottom: 4px; margin: 12px 0 12px; }
  h3 { font-size: 16px; margin: 18px 0 8px; }
  table { border-collapse: collapse; margin: 0 0 12px; }
  th, td { border: 1px solid #d1d9e0; padding: 4px 12px; text-align: left; vertical-align: top; overflow-wrap: anywhere; }
  code { font: 12px "DejaVu Sans Mono", monospace; }
  th { font-weight: 600; } tr:nth-child(2n) td { background: #f6f8fa; }
  a { color: #0969da; text-decoration: none; } p { margin: 0 0 12px; }
</style><div class="panel"><div class="head">deploy summary</div><div class="body">${body}</div></div>`

const tmp = mkdtempSync(path.join(tmpdir(), 'bgd-summary-'))
try {
  const html = path.join(tmp, 'summary.html')
  writeFileSync(html, page)
  // the page's height: what the rendered document measures, asked of the same browser
  const chromium = (args) =>
    spawnSync(
      'chromium',
      ['--headless', '--no-sandbox', '--disable-gpu', `--user-data-dir=${tmp}/profile`, ...args],
      { encoding: 'utf8', timeout: 60_000 }
    )
  const probe = path.join(tmp, 'probe.html')
  writeFileSync(
    probe,
    `${page}<script>document.title = String(Math.ceil(document.querySelector(".panel").getBoundingClientRect().bottom) + 16)</script>`
  )
  const dom = chromium([`--window-size=${WIDTH},4000`, '--dump-dom', `file://${probe}`])
  if (dom.error || dom.status !== 0)
    throw new Error(`chromium did not run (apt-get install chromium): ${dom.error ?? dom.stderr}`)
  const height = Number(/<title>(\d+)<\/title>/.exec(dom.stdout)?.[1] ?? 1200)
  const shot = chromium([
    `--window-size=${WIDTH},${height}`,
    '--hide-scrollbars',
    `--screenshot=${out}`,
    `file://${html}`
  ])
  if (shot.status !== 0 || !existsSync(out)) throw new Error(`no screenshot: ${shot.stderr}`)
  console.log(`${path.relative(ROOT, out)}: ${WIDTH} × ${height} px, from ${input}`)
} finally {
  rmSync(tmp, { recursive: true, force: true })
}
