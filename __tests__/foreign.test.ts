import { ForeignText } from '../src/foreign.js'
import { runnerCommands } from './support/runner-commands.js'
import { shownBuildArgs } from '../src/image.js'
import { foreignRunner } from '../src/runner.js'

const hostile = [
  '::error::x',
  ' ::add-mask::v1',
  'log ##[set-output name=x;]y',
  'a\r::warning::b',
  '\t::set-env name=NODE_OPTIONS::--require /tmp/x',
  '::stop-commands::guess',
  '::endgroup::'
]

describe('the runner command parser used by the tests', () => {
  test.each([
    ['::error::x', 'error', 'x'],
    ['   ::add-mask::v1', 'add-mask', 'v1'],
    ['log ##[set-output name=x;]y', 'set-output', 'y'],
    ['a\r::warning::b', 'warning', 'b'],
    ['::ERROR file=a::upper case', 'error', 'upper case']
  ])('%j is a command', (line, command, data) => {
    expect(runnerCommands(line)).toEqual([expect.objectContaining({ command, data })])
  })

  test.each([
    ['x ::error::not at the start'],
    ['::nosuch::x'],
    ['##[error no end'],
    [':: error::x']
  ])('%j is not', (line) => {
    expect(runnerCommands(line)).toEqual([])
  })

  test('stop-commands pauses both parsers until its token', () => {
    const log = [
      '::stop-commands::tok',
      '::error::x',
      'a ##[warning]b',
      '::tok::',
      '::error::y'
    ].join('\n')
    expect(runnerCommands(log).map((c) => `${c.command} ${c.data}`)).toEqual([
      'stop-commands tok',
      'tok ',
      'error y'
    ])
  })
})

test('foreign text printed through ForeignText issues no command; the action resumes its own', () => {
  let out = ''
  const f = new ForeignText((s) => (out += s), 'c0ffee')
  for (const line of hostile) f.print(line)
  f.resume()
  out += '::group::own\n'
  f.print('::error::again')
  f.resume()
  f.resume()
  const commands = runnerCommands(out).map((c) => c.command)
  expect(commands).toEqual(['stop-commands', 'c0ffee', 'group', 'stop-commands', 'c0ffee'])
  // a lone \r inside a line is printed as the line break the runner reads it as
  expect(out).toContain('a\n::warning::b\n')
})

test('each ForeignText has its own random token', () => {
  const tokens = new Set<string>()
  for (let i = 0; i < 20; i++) {
    let out = ''
    new ForeignText((s) => (out += s)).print('x')
    tokens.add(out.split('\n')[0]!)
  }
  expect(tokens.size).toBe(20)
})

test("a local command's output (docker build's RUN steps) is printed inert, and the build's arguments by name only", async () => {
  let out = ''
  const f = new ForeignText((s) => (out += s), 'b0b0')
  const runner = foreignRunner(f)
  const r = await runner.run(
    'bash',
    [
      '-c',
      'printf "step 1\\n::set-output name=image::evil\\n  ##[error]x\\r::stop-commands::mine\\n"; printf "::mine::\\n::add-mask::y\\npart" >&2'
    ],
    { shown: shownBuildArgs(['build', '--build-arg', 'NPM_TOKEN=s3cr3t-npm', '--', '.']) }
  )
  expect(r.code).toBe(0)
  f.resume()
  out += '::endgroup::\n'
  // only the pause and its end, and the action's own command after it
  expect(runnerCommands(out).map((c) => c.command)).toEqual(['stop-commands', 'b0b0', 'endgroup'])
  expect(out).toContain('[command]bash build --build-arg NPM_TOKEN=… -- .')
  expect(out).not.toContain('s3cr3t')
  expect(out).toContain('::add-mask::y\npart\n')
})

test('foreign text from the build and from a server share one pause: each action command resumes first', () => {
  let out = ''
  const f = new ForeignText((s) => (out += s), 'abc')
  f.print('build: ::error::from the build')
  f.print('server: ::warning::from the server')
  f.resume()
  out += '::group::own\n'
  f.print('build: ##[set-output name=x]y')
  f.resume()
  out += '::endgroup::\n'
  expect(runnerCommands(out).map((c) => c.command)).toEqual([
    'stop-commands',
    'abc',
    'group',
    'stop-commands',
    'abc',
    'endgroup'
  ])
})
