/**
 * Split a string into words the way a POSIX shell does for quoting only: whitespace separates,
 * '…' is literal, "…" honours \" \\ \$ \`, a backslash outside quotes escapes the next character.
 * Nothing is expanded ($VAR, $(…), globs stay literal), and ; & | < > are ordinary characters:
 * the words are passed on as an argv array, never to a shell.
 */
export function splitWords(input: string): string[] {
  const words: string[] = []
  let word = ''
  let inWord = false
  let i = 0
  while (i < input.length) {
    const c = input[i]!
    if (/\s/.test(c)) {
      if (inWord) words.push(word)
      word = ''
      inWord = false
      i++
    } else if (c === "'") {
      const end = input.indexOf("'", i + 1)
      if (end < 0) throw new Error(`unterminated ' quote at character ${i + 1}`)
      word += input.slice(i + 1, end)
      inWord = true
      i = end + 1
    } else if (c === '"') {
      i++
      inWord = true
      for (;;) {
        if (i >= input.length) throw new Error('unterminated " quote')
        const d = input[i]!
        if (d === '"') break
        if (d === '\\' && i + 1 < input.length && '"\\$`'.includes(input[i + 1]!)) {
          word += input[i + 1]
          i += 2
        } else {
          word += d
          i++
        }
      }
      i++
    } else if (c === '\\') {
      if (i + 1 >= input.length) throw new Error('trailing backslash')
      word += input[i + 1]
      inWord = true
      i += 2
    } else {
      word += c
      inWord = true
      i++
    }
  }
  if (inWord) words.push(word)
  return words
}

/** Lines of a multiline input: trimmed, without blank lines and # comments. */
export function splitLines(input: string): string[] {
  return input
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
}
