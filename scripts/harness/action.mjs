// The action run the way GitHub runs it: node dist/index.js with INPUT_* variables, its log, outputs and summary.
import { spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { ROOT } from './services.mjs'

/**
 * The `timeline` output of a run as step -> epoch ms.
 * @param {Record<string, string>} outputs
 * @returns {Record<string, number>}
 */
export function timelineOf(outputs) {
  /** @type {Record<string, number>} */
  const t = {}
  for (const e of JSON.parse(outputs.timeline || '[]')) t[e.step] = e.ms
  return t
}

/**
 * Parse a GITHUB_OUTPUT file (`name<<DELIM\nvalue\nDELIM`).
 * @param {string} text
 * @returns {Record<string, string>}
 */
export function parseOutputFile(text) {
  /** @type {Record<string, string>} */
  const out = {}
  const lines = text.split('\n')
  for (let i = 0; i < lines.length; i++) {
    const m = /^([^<]+)<<(.+)$/.exec(lines[i] ?? '')
    if (!m) continue
    const value = []
    for (i++; i < lines.length && lines[i] !== m[2]; i++) value.push(lines[i])
    out[String(m[1])] = value.join('\n')
  }
  return out
}

/**
 * @typedef {object} ActionRun
 * @property {number} code
 * @property {string} log stdout and stderr interleaved as the runner's log shows them
 * @property {Record<string, string>} outputs
 * @property {string} summary
 * @property {number} ms
 * @property {number} startedAt epoch ms when the process was spawned
 */

/**
 * @typedef {object} RunOptions
 * @property {object} [event] the event payload written to GITHUB_EVENT_PATH
 * @property {string} [eventName]
 * @property {string} workspace
 * @property {string} [sha]
 * @property {string} [apiUrl]
 * @property {Record<string, string>} [env]
 * @property {(pid: number) => void} [onSpawn] called with the child's pid once it started
 * @property {(text: string) => void} [onLog] called with every chunk of the log as it comes
 */

/**
 * Run `node dist/index.js` the way the GitHub runner runs a node action.
 * @param {Record<string, string>} inputs
 * @param {RunOptions} opts
 * @returns {Promise<ActionRun>}
 */
export async function runAction(inputs, opts) {
  const tmp = mkdtempSync(path.join(tmpdir(), 'bgd-run-'))
  const eventPath = path.join(tmp, 'event.json')
  const outputPath = path.join(tmp, 'output')
  const summaryPath = path.join(tmp, 'summary.md')
  writeFileSync(eventPath, JSON.stringify(opts.event ?? {}))
  writeFileSync(outputPath, '')
  writeFileSync(summaryPath, '')
  /** @type {Record<string, string>} */
  const env = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: process.env.HOME ?? '/root',
    GITHUB_ACTIONS: 'true',
    CI: 'true',
    GITHUB_EVENT_NAME: opts.eventName ?? 'push',
    GITHUB_EVENT_PATH: eventPath,
    GITHUB_OUTPUT: outputPath,
    GITHUB_STEP_SUMMARY: summaryPath,
    GITHUB_SHA: opts.sha ?? 'f00dfeedf00dfeedf00dfeedf00dfeedf00dfeed',
    GITHUB_REF: 'refs/heads/main',
    GITHUB_REPOSITORY: 'acme/shop',
    GITHUB_REPOSITORY_OWNER: 'acme',
    GITHUB_ACTOR: 'octocat',
    GITHUB_RUN_ID: '4242',
    GITHUB_RUN_ATTEMPT: '1',
    GITHUB_WORKFLOW: 'deploy',
    GITHUB_SERVER_URL: 'https://github.com',
    GITHUB_API_URL: opts.apiUrl ?? 'http://127.0.0.1:9',
    GITHUB_WORKSPACE: opts.workspace,
    RUNNER_TEMP: tmp,
    ...opts.env
  }
  // GitHub passes each input as INPUT_<NAME uppercased, spaces as _>; hyphens stay.
  for (const [name, value] of Object.entries(inputs))
    env[`INPUT_${name.replace(/ /g, '_').toUpperCase()}`] = value
  const startedAt = Date.now()
  const child = spawn(process.execPath, [path.join(ROOT, 'dist/index.js')], {
    cwd: opts.workspace,
    env
  })
  if (child.pid) opts.onSpawn?.(child.pid)
  let log = ''
  const take = (/** @type {Buffer} */ d) => {
    log += d
    opts.onLog?.(d.toString())
  }
  child.stdout.on('data', take)
  child.stderr.on('data', take)
  /** @type {number} */
  const code = await new Promise((resolve) =>
    child.on('close', (c, signal) => resolve(c ?? (signal ? 128 : 1)))
  )
  const run = {
    code,
    log,
    outputs: parseOutputFile(readFileSync(outputPath, 'utf8')),
    summary: readFileSync(summaryPath, 'utf8'),
    ms: Date.now() - startedAt,
    startedAt
  }
  rmSync(tmp, { recursive: true, force: true })
  return run
}
