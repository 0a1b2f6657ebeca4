// What the GitHub runner would execute in a step's log, following its two parsers
// (actions/runner ActionCommand.TryParseV2 and TryParse, ActionCommandManager): a line ends at
// \n, \r\n or a lone \r; `::name props::data` counts after leading white space, `##[name props]data`
// anywhere in a line; `::stop-commands::TOKEN` pauses both until a `::TOKEN::` (or `##[TOKEN]`).

export interface RunnerCommand {
  line: number
  command: string
  data: string
}

const REGISTERED = [
  'set-env',
  'set-output',
  'save-state',
  'add-mask',
  'add-path',
  'add-matcher',
  'remove-matcher',
  'warning',
  'error',
  'notice',
  'debug',
  'group',
  'endgroup',
  'echo',
  'stop-commands'
]

function parse(
  line: string,
  registered: Set<string>
): { command: string; data: string } | undefined {
  const v2 = line.trimStart()
  if (v2.startsWith('::')) {
    const end = v2.indexOf('::', 2)
    if (end >= 0) {
      const command = v2.slice(2, end).split(' ')[0]!.toLowerCase()
      if (registered.has(command)) return { command, data: v2.slice(end + 2) }
    }
  }
  const start = line.indexOf('##[')
  if (start >= 0) {
    const end = line.indexOf(']', start + 3)
    if (end >= 0) {
      const command = line
        .slice(start + 3, end)
        .split(' ')[0]!
        .toLowerCase()
      if (registered.has(command)) return { command, data: line.slice(end + 1) }
    }
  }
  return undefined
}

/** The commands the runner would process in `log`, in order (stop and resume included). */
export function runnerCommands(log: string): RunnerCommand[] {
  const registered = new Set(REGISTERED)
  const found: RunnerCommand[] = []
  let stopToken: string | undefined
  log.split(/\r\n|\r|\n/).forEach((text, i) => {
    const c = parse(text, registered)
    if (!c) return
    if (stopToken !== undefined) {
      if (c.command !== stopToken) return
      registered.delete(stopToken)
      stopToken = undefined
      found.push({ line: i + 1, ...c })
      return
    }
    found.push({ line: i + 1, ...c })
    if (c.command === 'stop-commands' && c.data) {
      stopToken = c.data.toLowerCase()
      registered.add(stopToken)
    }
  })
  return found
}
