#!/usr/bin/env node
// Load generator for deploy tests and the benchmark. Runs until SIGTERM/SIGINT or --seconds,
// then prints one JSON line with what it saw.
//
//   node scripts/load.mjs --url http://127.0.0.1:PORT [--keepalive 16] [--fresh 4] [--slow 2]
//        [--slow-path /cgi-bin/slow] [--seconds 60] [--client-ids 1000]
//
// keepalive clients reuse one connection each, like browsers; a request that fails on a *reused*
// connection before any response byte is retried once on a new connection (as browsers do) and
// counted as a `race`, not a failure. fresh clients open a new connection per request. slow clients
// keep a slow request in flight. With --client-ids N each request says it comes from one of N
// users, drawn at random (header X-Client), for a canary split by client (canary-key). Every non-2xx answer and every other error is a failure.
// The final line also holds `t0` (epoch ms all times count from) and a `timeline` of 10 ms buckets:
// [ms since t0, { version or 'failed': responses }], the data of the benchmark's chart.
import http from 'node:http'

const args = Object.fromEntries(
  process.argv
    .slice(2)
    .reduce((acc, a, i, all) => (a.startsWith('--') ? [...acc, [a.slice(2), all[i + 1]]] : acc), [])
)
const url = new URL(args.url ?? 'http://127.0.0.1:8080/')
const keepalive = Number(args.keepalive ?? 16)
const fresh = Number(args.fresh ?? 4)
const slow = Number(args.slow ?? 2)
const slowPath = args['slow-path'] ?? '/cgi-bin/slow'
const seconds = Number(args.seconds ?? 600)
const clientIds = Number(args['client-ids'] ?? 0)

const t0 = Date.now()
const bucketMs = 10
const buckets = new Map() // bucket index -> { version or 'failed': count }
const stats = {
  requests: 0,
  ok: 0,
  non2xx: 0,
  errors: 0,
  races: 0,
  slowStarted: 0,
  slowCompleted: 0,
  slowFailed: 0,
  failures: [], // first few failures, for the test's message
  errorsByKind: { keepalive: 0, fresh: 0, slow: 0 }, // connection errors (after the retry) per client kind
  versions: {}, // version -> { count, first, last } (ms since start)
  failedClients: 0, // with --client-ids: how many clients got a non-2xx answer or an error
  clients: {}, // with --client-ids: client id -> [[ms since start, version], ...] of its quick 2xx answers
  statuses: {}
}
let running = true
const failedClients = new Set()

function get(path, agent) {
  const client = clientIds > 0 ? `u${Math.floor(Math.random() * clientIds)}` : undefined
  return new Promise((resolve) => {
    const req = http.get(
      {
        host: url.hostname,
        port: url.port,
        path,
        agent,
        timeout: 30_000,
        headers: client ? { 'x-client': client } : {}
      },
      (res) => {
        let body = ''
        res.setEncoding('utf8')
        res.on('data', (d) => (body += d))
        res.on('end', () => resolve({ status: res.statusCode, body, client }))
        res.on('error', (e) => resolve({ error: e, gotResponse: true, client }))
      }
    )
    req.on('timeout', () => req.destroy(new Error('timeout')))
    req.on('error', (e) => resolve({ error: e, reused: req.reusedSocket, client }))
  })
}

function bucket(t, key) {
  const i = Math.floor(t / bucketMs)
  const b = buckets.get(i) ?? {}
  b[key] = (b[key] ?? 0) + 1
  buckets.set(i, b)
}

function record(kind, r) {
  const t = Date.now() - t0
  stats.requests++
  if (r.error || r.status < 200 || r.status > 299) {
    bucket(t, 'failed')
    if (r.client) failedClients.add(r.client)
  }
  if (r.error) {
    stats.errors++
    stats.errorsByKind[kind]++
    if (stats.failures.length < 20)
      stats.failures.push({ t, kind, error: r.error.code ?? r.error.message })
    return
  }
  stats.statuses[r.status] = (stats.statuses[r.status] ?? 0) + 1
  if (r.status < 200 || r.status > 299) {
    stats.non2xx++
    if (stats.failures.length < 20)
      stats.failures.push({ t, kind, status: r.status, body: r.body.slice(0, 100) })
    return
  }
  stats.ok++
  const version = r.body.trim().split(/\s+/)[0]
  bucket(t, version)
  const v = (stats.versions[version] ??= { count: 0, first: t, last: t })
  v.count++
  v.last = t
  // a slow answer comes seconds after nginx picked its version: not a client's sample
  if (r.client && kind !== 'slow') (stats.clients[r.client] ??= []).push([t, version])
}

async function keepaliveClient() {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
  while (running) {
    let r = await get(url.pathname, agent)
    if (r.error && r.reused && !r.gotResponse) {
      stats.races++
      r = await get(url.pathname, agent)
    }
    record('keepalive', r)
  }
  agent.destroy()
}

async function freshClient() {
  while (running) record('fresh', await get(url.pathname, false))
}

async function slowClient() {
  while (running) {
    stats.slowStarted++
    const r = await get(slowPath, false)
    if (r.error || r.status < 200 || r.status > 299) {
      stats.slowFailed++
      record('slow', r)
    } else {
      stats.slowCompleted++
      record('slow', r)
    }
  }
}

const clients = [
  ...Array.from({ length: keepalive }, keepaliveClient),
  ...Array.from({ length: fresh }, freshClient),
  ...Array.from({ length: slow }, slowClient)
]
const stop = () => (running = false)
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
const timer = setTimeout(stop, seconds * 1000)
process.stdout.write(JSON.stringify({ started: true, t0 }) + '\n')
await Promise.all(clients)
clearTimeout(timer)
stats.ms = Date.now() - t0
stats.failedClients = failedClients.size
const timeline = [...buckets.entries()]
  .sort((a, b) => a[0] - b[0])
  .map(([i, b]) => [i * bucketMs, b])
process.stdout.write(JSON.stringify({ ...stats, t0, bucketMs, timeline }) + '\n')
