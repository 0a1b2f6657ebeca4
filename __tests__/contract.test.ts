import { spawnSync } from 'node:child_process'
import { existsSync, readFileSync, readdirSync } from 'node:fs'
import { parse } from 'yaml'
import { INPUT_NAMES, SECRET_INPUTS } from '../src/config.js'
import { defaultOf } from '../src/config-inputs.js'

const action = parse(readFileSync('action.yml', 'utf8')) as {
  inputs: Record<string, { default?: string }>
  outputs: Record<string, unknown>
  runs: { using: string; main: string }
}
const readme = readFileSync('README.md', 'utf8')
const reference = readFileSync('docs/inputs.md', 'utf8')
/** The rows of a markdown table of inputs: name -> its default column. */
const rowsOf = (text: string) =>
  Object.fromEntries(
    [...text.matchAll(/^\|\s*`([\w-]+)`\s*\|\s*([^|]*?)\s*\|/gm)].map((m) => [m[1]!, m[2]!])
  )

test('action.yml declares exactly the inputs the config reads', () => {
  expect(Object.keys(action.inputs).sort()).toEqual([...INPUT_NAMES].sort())
})

test('runs on node24 from dist/index.js', () => {
  expect(action.runs).toEqual({ using: 'node24', main: 'dist/index.js' })
})

test('only github-token has a default in action.yml (the rest must not override the config file)', () => {
  expect(
    Object.entries(action.inputs)
      .filter(([, v]) => v.default !== undefined)
      .map(([k]) => k)
  ).toEqual(['github-token'])
})

test("docs/inputs.md's inputs reference is what the inputs table and action.yml give (node scripts/docs-inputs.mjs)", () => {
  const r = spawnSync(process.execPath, ['scripts/docs-inputs.mjs', '--check'], {
    encoding: 'utf8'
  })
  expect([r.status, r.stderr]).toEqual([0, ''])
})

test('docs/inputs.md documents every input and output', () => {
  for (const name of [...Object.keys(action.inputs), ...Object.keys(action.outputs)])
    expect(reference).toMatch(new RegExp(`\\|\\s*\`${name}\`\\s*\\|`))
})

test("README's short inputs table names real inputs, with the defaults the reference gives; README stays at most 15 KB", () => {
  const full = rowsOf(reference.split('\n## Outputs')[0]!)
  const short = rowsOf(readme)
  expect(Object.keys(short).length).toBeGreaterThanOrEqual(10)
  for (const [name, d] of Object.entries(short)) expect([name, d]).toEqual([name, full[name]])
  expect(Buffer.byteLength(readme)).toBeLessThanOrEqual(15 * 1024)
})

test('an input with a plain default has it in action.yml and in docs/inputs.md, as the config table says', () => {
  const descriptions = action.inputs as Record<string, { description?: string }>
  const rows = rowsOf(reference)
  for (const name of INPUT_NAMES) {
    const d = defaultOf(name)
    if (!d) continue
    expect([name, rows[name]]).toEqual([name, `\`${d}\``])
    const said = /Default: (.*?)'?$/.exec(descriptions[name]?.description ?? '')?.[1]
    if (said !== undefined)
      expect([name, [d, `${d}.`]]).toEqual([name, expect.arrayContaining([said])])
  }
})

test('the secret inputs are the ones docs/inputs.md calls secret', () => {
  for (const name of SECRET_INPUTS)
    expect(reference).toMatch(new RegExp(`\\|\\s*\`${name}\`\\s*\\|[^\\n]*secret`, 'i'))
})

test("Marketplace-ready: a description under 125 characters, an author, nothing Windows-only in dist/, the project's own workflows pinned by commit", () => {
  const meta = action as unknown as { description: string; author?: string }
  expect(meta.description.length).toBeLessThan(125)
  expect(meta.author).toBeTruthy()
  expect(readdirSync('dist').filter((f) => /\.(exe|dll|bat|cmd|ps1)$/i.test(f))).toEqual([])
  for (const f of readdirSync('.github/workflows')) {
    const uses = [...readFileSync(`.github/workflows/${f}`, 'utf8').matchAll(/uses:\s*(\S+)/g)]
      .map((m) => m[1]!)
      .filter((u) => !u.startsWith('./'))
    for (const u of uses) expect([f, u]).toEqual([f, expect.stringMatching(/@[0-9a-f]{40}$/)])
  }
  for (const f of ['SECURITY.md', 'CONTRIBUTING.md', '.github/ISSUE_TEMPLATE/bug.yml'])
    expect(existsSync(f)).toBe(true)
})

test('an install of the command line pulls nothing: the bundle carries every runtime dependency', () => {
  const pkg = JSON.parse(readFileSync('package.json', 'utf8')) as {
    dependencies?: Record<string, string>
    scripts: Record<string, string>
  }
  expect(pkg.dependencies ?? {}).toEqual({})
  // no install-time script would build anything on a user's machine
  for (const s of ['preinstall', 'install', 'postinstall', 'prepare'])
    expect(pkg.scripts[s]).toBeUndefined()
})
