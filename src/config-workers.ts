// The app's other processes, checked into its part of the Config: the pre-switch task (a
// migration) and the workers that swap with the web (src/remote/steps/task.sh, workers.sh).
import type { Collector } from './config-check.js'
import type { Config, Worker } from './config-types.js'
import { splitWords } from './words.js'

const WORKER_LINE =
  /^([a-z0-9][a-z0-9_.-]{0,30})((?:[ \t]+[a-z-]+(?:=[^\s:]*)?)*)[ \t]*:[ \t]*(.*)$/
const SIGNAL = /^(SIG)?[A-Z][A-Z0-9+-]{0,15}$|^\d{1,2}$/

/**
 * workers: one per line, `NAME [single] [stop-signal=SIG] [stop-timeout=SECONDS]: COMMAND`, e.g.
 * `jobs: bin/jobs --queue default` or `scheduler single stop-timeout=60: bin/cron`. The command's
 * words replace the image's CMD, split like a shell would.
 */
export function checkWorkers(c: Collector): Worker[] {
  const raw = c.get('workers')
  if (raw === undefined) return []
  const workers: Worker[] = []
  const example =
    'NAME [single] [stop-signal=SIGTERM] [stop-timeout=30]: COMMAND, e.g. jobs: bin/jobs'
  raw.split(/\r?\n/).forEach((text, i) => {
    const line = text.trim()
    if (line === '' || line.startsWith('#')) return
    const m = WORKER_LINE.exec(line)
    if (!m) {
      c.add(
        `Invalid workers line ${i + 1}: expected ${example} (a name of lowercase letters, digits, _ . -).`
      )
      return
    }
    const w: Worker = {
      name: m[1]!,
      words: [],
      single: false,
      stopSignal: 'SIGTERM',
      stopTimeout: 30
    }
    for (const opt of m[2]!.trim().split(/\s+/).filter(Boolean)) {
      const [key, value] = opt.split('=', 2) as [string, string | undefined]
      if (key === 'single' && value === undefined) w.single = true
      else if (key === 'stop-signal' && value !== undefined && SIGNAL.test(value))
        w.stopSignal = value
      else if (
        key === 'stop-timeout' &&
        value !== undefined &&
        /^\d{1,4}$/.test(value) &&
        Number(value) <= 3600
      )
        w.stopTimeout = Number(value)
      else
        c.add(
          `Invalid workers line ${i + 1} (${w.name}): '${opt}' is not an option; use single, stop-signal=SIGNAL (e.g. SIGTERM) or stop-timeout=SECONDS (0 to 3600).`
        )
    }
    try {
      w.words = splitWords(m[3]!)
    } catch (e) {
      c.add(
        `Invalid workers line ${i + 1} (${w.name}): the command is not quoted like a shell would (${(e as Error).message}).`
      )
    }
    if (w.words.length === 0)
      c.add(
        `Invalid workers line ${i + 1} (${w.name}): no command after the colon; expected ${example}.`
      )
    if (w.words.some((word) => /[\0\t\r\n]/.test(word)))
      c.add(`Invalid workers line ${i + 1} (${w.name}): a word holds a tab or control character.`)
    if (workers.some((o) => o.name === w.name))
      c.add(`Invalid workers: the name ${w.name} is given twice; each worker needs its own name.`)
    workers.push(w)
  })
  return workers
}

/**
 * pre-switch-command: the words of a command run in a one-off container of the new image (they
 * replace the image's CMD; its ENTRYPOINT stays), quoted like a shell would.
 */
export function checkTask(c: Collector): Config['app']['task'] {
  const timeout = c.num('pre-switch-timeout', 1, 86400, true)
  const force = c.bool('pre-switch-force')
  const raw = c.get('pre-switch-command')
  if (raw === undefined || raw.trim() === '') return undefined
  let words: string[] = []
  if (/[\0\r\n]/.test(raw))
    c.bad(
      'pre-switch-command',
      'one line: the command and its arguments, quoted like a shell would'
    )
  else
    try {
      words = splitWords(raw)
    } catch (e) {
      c.bad(
        'pre-switch-command',
        `a command quoted like a shell would, e.g. bin/migrate --all (${(e as Error).message})`
      )
    }
  return { words, timeout, force }
}
