import { readFileSync } from 'node:fs'
import { parse } from 'yaml'
import { INPUT_NAMES } from '../src/config.js'

const action = parse(readFileSync('action.yml', 'utf8')) as {
  inputs: Record<string, { default?: string }>
  outputs: Record<string, unknown>
  runs: { using: string; main: string }
}
const readme = readFileSync('README.md', 'utf8')

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

test('README documents every input and output', () => {
  for (const name of [...Object.keys(action.inputs), ...Object.keys(action.outputs)])
    expect(readme).toMatch(new RegExp(`\\|\\s*\`${name}\`\\s*\\|`))
})
