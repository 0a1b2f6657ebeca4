// Load during a deploy, and plain HTTP requests to what the tests made.
import { spawn } from 'node:child_process'
import { request as httpRequest } from 'node:http'
import path from 'node:path'
import { ROOT } from './services.mjs'

/**
 * GET a URL on loopback; resolves to status and body.
 * @param {string} url
 * @param {number} [timeoutMs]
 * @param {Record<string, string>} [headers]
 * @returns {Promise<{ status: number, body: string }>}
 */
export function httpGet(url, timeoutMs = 5000, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { agent: false, timeout: timeoutMs, headers }, (res) => {
      // decoded once at the end: a character split across two chunks stays whole
      /** @type {Buffer[]} */
      const chunks = []
      res.on('data', (d) => chunks.push(d))
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') })
      )
    })
    req.on('timeout', () => req.destroy(new Error('timeout')))
    req.on('error', reject)
    req.end()
  })
}

/** @param {number} ms */
export function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms))
}

/**
 * @typedef {object} LoadStats
 * @property {number} requests
 * @property {number} ok
 * @property {number} non2xx
 * @property {number} errors
 * @property {number} races
 * @property {number} slowStarted
 * @property {number} slowCompleted
 * @property {number} slowFailed
 * @property {unknown[]} failures
 * @property {{ keepalive: number, fresh: number, slow: number }} errorsByKind
 * @property {Record<string, { count: number, first: number, last: number }>} versions
 * @property {number} failedClients with clientIds: how many clients got a non-2xx answer or an error
 * @property {Record<string, [number, string][]>} clients with clientIds: each client's 2xx answers, [ms since t0, version]
 * @property {Record<string, number>} statuses
 * @property {number} ms
 * @property {number} t0 epoch ms the times above count from
 * @property {number} bucketMs width of a timeline bucket
 * @property {[number, Record<string, number>][]} timeline [ms since t0, {version or 'failed': count}]
 */

/** scripts/load.mjs in its own process, so the caller's own work does not slow the clients. */
export class Load {
  /** @type {import('node:child_process').ChildProcessWithoutNullStreams | undefined} */
  child = undefined
  out = ''
  /** epoch ms of the load generator's clock zero */
  startedAt = 0

  /**
   * @param {string} url
   * @param {{ keepalive?: number, fresh?: number, slow?: number, seconds?: number, clientIds?: number }} [opts]
   * @returns {Promise<this>}
   */
  async start(url, opts = {}) {
    const child = spawn(process.execPath, [
      path.join(ROOT, 'scripts/load.mjs'),
      '--url',
      url,
      '--keepalive',
      String(opts.keepalive ?? 16),
      '--fresh',
      String(opts.fresh ?? 4),
      '--slow',
      String(opts.slow ?? 2),
      '--seconds',
      String(opts.seconds ?? 300),
      ...(opts.clientIds ? ['--client-ids', String(opts.clientIds)] : [])
    ])
    this.child = child
    child.stdout.on('data', (d) => (this.out += d))
    child.stderr.on('data', (d) => process.stderr.write(d))
    while (!this.out.includes('"started"')) await sleep(20)
    this.startedAt = JSON.parse(this.out.split('\n')[0] ?? '{}').t0
    return this
  }

  /** @returns {Promise<LoadStats>} */
  async stop() {
    const child = this.child
    if (!child) throw new Error('load generator not started')
    const closed = new Promise((r) => child.on('close', r))
    child.kill('SIGTERM')
    await closed
    const lines = this.out.trim().split('\n')
    return JSON.parse(lines[lines.length - 1] ?? '{}')
  }
}

/**
 * Epoch ms of the first timeline bucket at or after `fromEpoch` in which `version` was served.
 * @param {LoadStats} stats
 * @param {string} version
 * @param {number} fromEpoch
 * @returns {number} NaN when it never was
 */
export function firstServed(stats, version, fromEpoch) {
  for (const [t, counts] of stats.timeline)
    if (stats.t0 + t + stats.bucketMs > fromEpoch && counts[version]) return stats.t0 + t
  return NaN
}

/**
 * Epoch ms of the end of the last timeline bucket (starting before `beforeEpoch`) in which
 * `version` was served.
 * @param {LoadStats} stats
 * @param {string} version
 * @param {number} [beforeEpoch]
 * @returns {number} NaN when it never was
 */
export function lastServed(stats, version, beforeEpoch = Infinity) {
  let last = NaN
  for (const [t, counts] of stats.timeline)
    if (counts[version] && stats.t0 + t < beforeEpoch) last = stats.t0 + t + stats.bucketMs
  return last
}
