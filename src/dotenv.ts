// The `env` input in the dotenv form users already keep in a secret:
//   KEY=VALUE            the rest of the line, as it is (like docker's --env-file)
//   export KEY=VALUE     the same
//   KEY='VALUE'          literal, on one line
//   KEY="VALUE"          may span lines (a PEM key); \n \r \t \" \\ are escapes, any other \ stays
//   # comment, blank     skipped
// Everything here is secret: a problem is reported by its line number only, never with any part
// of the line.

export interface DotenvResult {
  entries: [string, string][]
  /** 1-based line numbers with what is wrong there (no part of the line) */
  problems: { line: number; why: string }[]
}

const KEY = /^[A-Za-z_][A-Za-z0-9_]*$/
const ESCAPES: Record<string, string> = { n: '\n', r: '\r', t: '\t', '"': '"', '\\': '\\' }

export function parseDotenv(text: string): DotenvResult {
  const lines = text.split('\n').map((l) => (l.endsWith('\r') ? l.slice(0, -1) : l))
  const entries: [string, string][] = []
  const problems: DotenvResult['problems'] = []
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!
    const at = i + 1
    const body = line.trimStart()
    if (body === '' || body.startsWith('#')) continue
    const eq = body.indexOf('=')
    const key =
      eq < 0
        ? ''
        : body
            .slice(0, eq)
            .replace(/^export\s+/, '')
            .trim()
    if (!KEY.test(key)) {
      problems.push({ line: at, why: 'expected KEY=VALUE, KEY made of letters, digits and _' })
      continue
    }
    const rest = body.slice(eq + 1)
    const start = rest.trimStart()
    if (start.startsWith("'")) {
      const end = start.indexOf("'", 1)
      if (end < 0 || !closes(start.slice(end + 1))) {
        problems.push({ line: at, why: "a single-quoted value must end with ' on the same line" })
        continue
      }
      entries.push([key, start.slice(1, end)])
    } else if (start.startsWith('"')) {
      const read = readDoubleQuoted(lines, i, start.slice(1))
      if (!read) {
        problems.push({
          line: at,
          why: 'a double-quoted value must end with " (it may span lines; write \\" for a quote inside)'
        })
        break // the rest of the text is inside the open quote: nothing after it can be read
      }
      i = read.lastLine
      entries.push([key, read.value])
    } else {
      entries.push([key, rest])
    }
    if (/\0/.test(entries[entries.length - 1]?.[1] ?? '')) {
      entries.pop()
      problems.push({ line: at, why: 'a value cannot hold a NUL character' })
    }
  }
  return { entries, problems }
}

/** After a closing quote: nothing, or spaces and a # comment. */
function closes(after: string): boolean {
  return /^\s*(#.*)?$/.test(after)
}

function readDoubleQuoted(
  lines: string[],
  first: number,
  text: string
): { value: string; lastLine: number } | undefined {
  let value = ''
  let s = text
  for (let i = first; i < lines.length;) {
    for (let k = 0; k < s.length; k++) {
      const c = s[k]!
      if (c === '\\' && k + 1 < s.length) {
        const next = s[k + 1]!
        value += ESCAPES[next] ?? `\\${next}`
        k++
      } else if (c === '"') {
        return closes(s.slice(k + 1)) ? { value, lastLine: i } : undefined
      } else value += c
    }
    i++
    if (i >= lines.length) return undefined
    value += '\n'
    s = lines[i]!
  }
  return undefined
}
