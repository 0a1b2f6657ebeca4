// docs/inputs.md's inputs reference, generated from the one inputs table the code has
// (src/config-inputs.ts: name, group, secret, default) and each input's one description
// (action.yml, which the runner and `bg-deploy <command> --help` show too), so the page cannot
// drift from the code. Written between the page's `<!-- inputs:start -->` and `<!-- inputs:end -->`.
//   node scripts/docs-inputs.mjs           rewrite the page
//   node scripts/docs-inputs.mjs --check   exit 1 when the page is not what the code gives
import { readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import prettier from 'prettier'
import { parse } from 'yaml'
import { loadProtocol } from './join-remote.mjs'

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..')
const PAGE = path.join(ROOT, 'docs', 'inputs.md')
const START = '<!-- inputs:start -->'
const END = '<!-- inputs:end -->'

/** Each group of the table as the page heads it, with the pages that explain it. */
const GROUPS = {
  build: [
    'Build and registry',
    '[versions](versions.md), [build once, deploy many](versions.md#build-once-deploy-many)'
  ],
  version: ['Version and release', '[versions](versions.md)'],
  server: [
    'Servers and SSH',
    '[several servers](several-servers.md), [Swarm](swarm.md), [bastion](bastion.md), [security](security.md)'
  ],
  app: [
    'The application',
    '[a real application](application.md), [compose](compose.md), [environment](#environment)'
  ],
  switch: [
    'Switch, health and the watch',
    '[switch modes](switch-modes.md), [after the switch](after-the-switch.md), [the watch](watch.md)'
  ],
  run: [
    'The run',
    '[rollback](rollback.md), [telling GitHub and the team](#telling-github-and-the-team), [config file](#config-file)'
  ]
}

/** A description's `Default: …` (the last one) and `Required.`, taken out of its sentence. */
export function splitDescription(text) {
  let meaning = text.replace(/\s+/g, ' ').trim()
  let said
  const at = meaning.lastIndexOf('Default:')
  if (at >= 0) {
    said = meaning
      .slice(at + 'Default:'.length)
      .trim()
      .replace(/\.$/, '')
    if (said === 'none') said = ''
    meaning = meaning.slice(0, at).trim()
  }
  // `Required.` alone goes to the default column; `Required, unless …` stays in the sentence
  const required = /(^|\.\s)Required\b/.test(meaning)
  meaning = meaning.replace(/\s*Required\.$/, '')
  return { meaning: meaning.replace(/[.;,]$/, ''), said, required }
}

const cell = (s) => s.replace(/\|/g, '\\|')

/** The generated part of the page: a table per group, in the table's order. */
export function reference(inputs, descriptions, actionDefaults = {}) {
  const out = []
  for (const [group, [title, see]] of Object.entries(GROUPS)) {
    const names = Object.keys(inputs).filter((n) => inputs[n].group === group)
    if (!names.length) continue
    out.push(
      `### ${title}`,
      '',
      `See ${see}.`,
      '',
      '| input | default | meaning |',
      '| --- | --- | --- |'
    )
    for (const name of names) {
      const spec = inputs[name]
      const d = descriptions[name]
      if (d === undefined) throw new Error(`action.yml has no description for input '${name}'`)
      const { meaning, said, required } = splitDescription(d)
      const plain = spec.default ?? actionDefaults[name]
      const dflt = plain !== undefined ? `\`${plain}\`` : required ? 'required' : (said ?? '')
      const secret = spec.secret && !/secret/i.test(meaning) ? 'Secret. ' : ''
      out.push(`| \`${name}\` | ${cell(dflt)} | ${cell(secret + meaning)} |`)
    }
    out.push('')
  }
  return out.join('\n')
}

export async function render() {
  const { INPUTS } = loadProtocol(path.join(ROOT, 'src', 'config-inputs.ts'))
  const action = parse(readFileSync(path.join(ROOT, 'action.yml'), 'utf8'))
  const descriptions = Object.fromEntries(
    Object.entries(action.inputs).map(([k, v]) => [k, v.description ?? ''])
  )
  const page = readFileSync(PAGE, 'utf8')
  const a = page.indexOf(START)
  const b = page.indexOf(END)
  if (a < 0 || b < a) throw new Error(`${PAGE} lacks the ${START} … ${END} markers`)
  const actionDefaults = Object.fromEntries(
    Object.entries(action.inputs)
      .filter(([, v]) => v.default !== undefined)
      .map(([k, v]) => [k, String(v.default)])
  )
  const text = `${page.slice(0, a + START.length)}\n\n${reference(INPUTS, descriptions, actionDefaults)}\n${page.slice(b)}`
  const options = (await prettier.resolveConfig(PAGE)) ?? {}
  return { page, text: await prettier.format(text, { ...options, filepath: PAGE }) }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { page, text } = await render()
  if (process.argv.includes('--check')) {
    if (page !== text) {
      console.error(
        'docs/inputs.md is not what src/config-inputs.ts and action.yml give: run node scripts/docs-inputs.mjs'
      )
      process.exit(1)
    }
  } else writeFileSync(PAGE, text)
}
