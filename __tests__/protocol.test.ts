// The action and the server script speak one declared vocabulary (src/remote/protocol.ts): this holds
// the script's parameter table, its markers, events and history fields, and the action's
// arguments and defaults to it, so a name added or changed on one side only fails here.
import { testConfig } from './support/config.js'
import {
  EVENTS,
  HISTORY_FIELDS,
  COMMANDS,
  MARKERS,
  PARAMETERS,
  STAGES,
  SECRET_LINES,
  SERVING_FIELDS
} from '../src/remote/protocol.js'
import { loadDeployScript, remoteStdin, scriptArgs } from '../src/remote/request.js'

const script = loadDeployScript()
/** The script without its comment lines. */
const code = script
  .split('\n')
  .filter((l) => !l.trimStart().startsWith('#'))
  .join('\n')

/** The script's `declare -A P=(...)` table: key -> default, quotes removed. */
function parameterTable(text: string): Record<string, string> {
  const body = /^declare -A P=\(\n([\s\S]*?)\n\)$/m.exec(text)?.[1]
  if (!body) throw new Error('no `declare -A P=(...)` table in the script')
  const table: Record<string, string> = {}
  for (const m of body.matchAll(/\[(\w+)\]=('[^']*'|\S*)/g))
    table[m[1]!] = m[2]!.replace(/^'|'$/g, '')
  return table
}

const config = testConfig({
  'registry-username': 'bot',
  'registry-password': 'pw',
  env: 'A=1',
  'docker-run-args': '--memory 1g'
})
const req = {
  action: 'deploy' as const,
  image: 'ghcr.io/acme/shop:v1',
  version: 'v1',
  actor: 'a',
  runUrl: 'u'
}

test('the script declares exactly the parameters of the protocol, with the same defaults', () => {
  expect(parameterTable(script)).toEqual(PARAMETERS)
})

test("the action sends only declared parameters, and its defaults are the script's", () => {
  const sent = scriptArgs(config, req).map((a) => [
    a.slice(0, a.indexOf('=')),
    a.slice(a.indexOf('=') + 1)
  ])
  for (const [key] of sent) expect(Object.keys(PARAMETERS)).toContain(key)
  // a value the config left at its default is the script's default too
  const defaults = Object.fromEntries(
    sent.filter(([k]) => PARAMETERS[k as keyof typeof PARAMETERS])
  )
  for (const [key, value] of Object.entries(defaults))
    if (
      ![
        'action',
        'image',
        'version',
        'app',
        'actor',
        'run_url',
        'registry',
        'registry_user',
        'upstream_file',
        'upstream_name'
      ].includes(key)
    )
      expect([key, value]).toEqual([key, PARAMETERS[key as keyof typeof PARAMETERS]])
  expect(Object.keys(defaults)).toEqual(
    expect.arrayContaining(['container_port', 'health_interval', 'switch_mode', 'live_port'])
  )
})

test('the script prints only declared markers and events, and every event', () => {
  const markers = [...code.matchAll(/\bmarker ([a-z]+) /g)].map((m) => m[1])
  const printed = [...code.matchAll(/::bg-deploy-(\w+)::/g)].map((m) => m[1])
  // and every declared marker is printed somewhere (`event` through its own printf)
  expect([...new Set([...markers, ...printed])].sort()).toEqual([...MARKERS].sort())
  for (const m of [...markers, ...printed]) expect(MARKERS).toContain(m)
  const events = new Set([...code.matchAll(/\bevent ([a-z]+)\b/g)].map((m) => m[1]))
  expect([...events].sort()).toEqual([...EVENTS].sort())
})

test('the script reads exactly the declared secret lines', () => {
  const cases =
    /params_read_secrets\(\) \{[\s\S]*?case "\$name" in([\s\S]*?)esac/.exec(script)?.[1] ?? ''
  const names = [...cases.matchAll(/^\s*(\w+)\)/gm)].map((m) => m[1])
  expect(names.sort()).toEqual([...SECRET_LINES].sort())
  const sent = remoteStdin('', config)
    .trim()
    .split('\n')
    .map((l) => l.split(' ')[0])
  for (const n of sent) expect(SECRET_LINES).toContain(n)
})

test('the serving line has the declared fields, in order', () => {
  const line = /marker serving "([^"]*)"/.exec(code)?.[1] ?? ''
  expect([...line.matchAll(/(?:^| )(\w+)=/g)].map((m) => m[1])).toEqual([...SERVING_FIELDS])
})

test('a history row has the declared fields, in order', () => {
  const add =
    /history_add\(\) \{[^\n]*\n(?:\s*local [^\n]*\n)?\s*printf '([^']*)'/.exec(script)?.[1] ?? ''
  expect(add.split('\\t')).toHaveLength(HISTORY_FIELDS.length)
})

test('a run in two phases reports exactly the declared stages and knows only the declared commands', () => {
  const stages = new Set([...code.matchAll(/\bcommand_await ([a-z]+)\b/g)].map((m) => m[1]))
  expect([...stages].sort()).toEqual([...STAGES].sort())
  // every command the script compares with is a declared one (eof: its own word for no command)
  const compared = [
    ...code.matchAll(
      /(?:"\$cmd" [!=]= |next=|case "\$cmd" in[\s\S]*?)\b(pull|switch|finish|keep|undo|abort)\b/g
    )
  ].map((m) => m[1])
  for (const c of compared) expect(COMMANDS).toContain(c)
  expect(code).toContain('keep)')
  expect(code).toContain('pull)')
})
