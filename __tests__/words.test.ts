import { splitLines, splitWords } from '../src/words.js'

test.each([
  ['', []],
  ['--memory 256m', ['--memory', '256m']],
  ['  -e  A=1\t-e B=2 ', ['-e', 'A=1', '-e', 'B=2']],
  [`--label 'a b' --label "c d"`, ['--label', 'a b', '--label', 'c d']],
  [`--x='$(id)' "\\$HOME" \`id\``, ['--x=$(id)', '$HOME', '`id`']],
  [`a\\ b c;d && e`, ['a b', 'c;d', '&&', 'e']],
  [`"it's" 'say "hi"'`, ["it's", 'say "hi"']],
  [`''`, ['']],
  [`"a\\"b"`, ['a"b']]
])('splitWords(%j)', (input, expected) => {
  expect(splitWords(input)).toEqual(expected)
})

test.each([[`'open`], [`"open`], ['end\\']])('splitWords(%j) rejects', (input) => {
  expect(() => splitWords(input)).toThrow()
})

test('splitLines drops blanks and comments', () => {
  expect(splitLines(' A=1 \n\n# note\r\nB=2\r\n')).toEqual(['A=1', 'B=2'])
})
