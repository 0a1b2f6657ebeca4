// Hostile input: 1000 generated hostile values per input class that reaches a shell or a
// command line. Each is either rejected before any side effect, with a message naming the input, or
// reaches its destination literally: through the real sshd and bash as the deploy script's
// arguments, as one argv word of docker build, or (env values) inside the real container byte for
// byte. A canary file that every payload tries to create must never exist.
import { existsSync, rmSync } from 'node:fs'
import {
  ConfigError,
  parseConfig,
  type Config,
  type InputName,
  type Inputs
} from '../../src/config.js'
import { buildArgs } from '../../src/image.js'
import { splitLines } from '../../src/words.js'
import { remoteCommand, scriptArgs } from '../../src/remote/request.js'
import { connectSsh, type RemoteShell } from '../../src/ssh.js'
import { appFixture, deployApp, expectOk, httpGet, visibleLog } from './helpers.js'

const fixture = appFixture()
const CANARY = `/tmp/bgd-canary-${process.pid}`
const PER_CLASS = 1000

/** A small seeded PRNG (mulberry32), so a failure can be reproduced. */
function rng(seed: number): () => number {
  let a = seed
  return () => {
    a = (a + 0x6d2b79f5) | 0
    let t = Math.imul(a ^ (a >>> 15), 1 | a)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const FRAGMENTS = [
  "'",
  '"',
  `$(touch ${CANARY})`,
  `\`touch ${CANARY}\``,
  `; touch ${CANARY}`,
  `&& touch ${CANARY}`,
  `| touch ${CANARY}`,
  `\ntouch ${CANARY}\n`,
  `>${CANARY}`,
  `$'\\x41'`,
  '\0',
  '\r',
  '\t',
  ' ',
  'ü',
  '日本語',
  '🚀',
  '\u202e',
  '--',
  '-rf',
  '-oProxyCommand=x',
  '$HOME',
  '${IFS}',
  '$((1+1))',
  '\\',
  '*',
  '?',
  '[a]',
  '{a,b}',
  '~',
  '#',
  '%s%n',
  '!!',
  '=',
  ':',
  '/',
  '..',
  'a',
  'v1.2.3',
  '0'
]

/** `count` hostile strings: fragments joined, some behind dashes, some very long. */
function hostile(seed: number, count = PER_CLASS): string[] {
  const r = rng(seed)
  const pick = () => FRAGMENTS[Math.floor(r() * FRAGMENTS.length)]!
  const out: string[] = []
  for (let i = 0; i < count; i++) {
    let v = Array.from({ length: 1 + Math.floor(r() * 6) }, pick).join('')
    if (r() < 0.15) v = `-${v}`
    if (r() < 0.03) v = v.repeat(Math.ceil(3000 / v.length))
    out.push(v)
  }
  return out
}

const ctx = { repository: 'acme/shop', workspace: '/ws' }
const base: Inputs = {
  image: '127.0.0.1:5000/hostile/app',
  host: '127.0.0.1',
  username: 'root',
  'ssh-key': '-----BEGIN OPENSSH PRIVATE KEY-----\nx\n-----END OPENSSH PRIVATE KEY-----',
  'insecure-ignore-host-key': 'true'
}

/** Validate every value of a class: [accepted configs, rejected count]; a rejection names the input. */
function sortOut(
  name: InputName,
  values: string[],
  extra: Inputs = {}
): { accepted: [string, Config][]; rejected: number } {
  const accepted: [string, Config][] = []
  let rejected = 0
  for (const v of values) {
    try {
      accepted.push([v, parseConfig({ ...base, ...extra, [name]: v }, ctx)])
    } catch (e) {
      if (!(e instanceof ConfigError)) throw e
      const named = e.problems.some((p) => p.includes(name))
      if (!named)
        throw new Error(`${name}=${JSON.stringify(v)} was refused without naming it: ${e.message}`)
      rejected++
    }
  }
  return { accepted, rejected }
}

let shell: RemoteShell
beforeAll(async () => {
  rmSync(CANARY, { force: true })
  const svc = fixture.services()
  shell = await connectSsh({
    host: svc.sshHost,
    port: svc.sshPort,
    username: svc.sshUser,
    privateKey: svc.sshKey,
    hostKeyPins: [],
    insecureIgnoreHostKey: true,
    connectTimeout: 20
  })
})
afterAll(() => {
  shell?.dispose()
  expect(existsSync(CANARY)).toBe(false)
})

/**
 * The remote half of the transport, for real: the command line the action sends (bash -s -- with
 * quoted key=value words) through sshd and the login shell, with a script on stdin that prints the
 * arguments it got, NUL-separated. Returns them.
 */
async function remoteArgs(args: string[]): Promise<string[]> {
  let out = Buffer.alloc(0)
  let err = ''
  const r = await shell.exec(remoteCommand(args), {
    stdin: `printf '%s\\0' "$@"\n`,
    onStdout: (c) => (out = Buffer.concat([out, c])),
    onStderr: (c) => (err += c)
  })
  if (r.code !== 0) throw new Error(`remote exit ${r.code}: ${err}`)
  return out.toString('utf8').split('\0').slice(0, -1)
}

const req = { action: 'deploy' as const, image: 'x/y:v1', version: 'v1', actor: 'a', runUrl: 'u' }
/** a rollback input becomes the request's target */
const requestOf = (c: Config) =>
  c.rollback ? { ...req, action: 'rollback' as const, target: c.rollback } : req

// inputs that reach the deploy script's command line on the server
const REMOTE: InputName[] = [
  'app-name',
  'health-path',
  'nginx-upstream-file',
  'nginx-upstream-name',
  'env-file',
  'network',
  'registry-username',
  'docker-run-args',
  'rollback'
]

test.each(REMOTE.map((name, i) => [name, i]))(
  '%s: 1000 hostile values are refused, naming the input, or reach the server script literally',
  async (name, i) => {
    const extra: Inputs = name === 'registry-username' ? { 'registry-password': 'x' } : {}
    const pathLike = ['health-path', 'nginx-upstream-file', 'env-file'].includes(name as string)
    const values = hostile(1000 + (i as number)).map((v, k) => (pathLike && k % 2 ? `/${v}` : v))
    const { accepted, rejected } = sortOut(name as InputName, values, extra)
    // the arguments a value changes (itself, and what derives from it), up to ~60 kB of them per
    // SSH command; every one must arrive exactly as sent
    const plainInputs = name === 'registry-username' ? { ...extra, [name]: 'u' } : extra
    const plain = new Set(scriptArgs(parseConfig({ ...base, ...plainInputs }, ctx), req))
    const args = accepted.flatMap(([, c]) =>
      scriptArgs(c, requestOf(c)).filter((a) => !plain.has(a))
    )
    for (let k = 0; k < args.length;) {
      const batch: string[] = []
      for (let size = 0; k < args.length && (batch.length === 0 || size < 60_000); k++) {
        batch.push(args[k]!)
        size += args[k]!.length
      }
      expect(await remoteArgs(batch)).toEqual(batch)
    }
    console.log(
      `${name}: ${PER_CLASS} hostile values, ${rejected} refused, ${accepted.length} arrived literally`
    )
    expect(existsSync(CANARY)).toBe(false)
  },
  120_000
)

test.each([
  ['build-args', 2000],
  ['context', 2001],
  ['dockerfile', 2002],
  ['image', 2003],
  ['version', 2004]
] as const)(
  '%s: 1000 hostile values are refused, naming the input, or become one literal argv word',
  (name, seed) => {
    const { accepted, rejected } = sortOut(name, hostile(seed))
    for (const [v, c] of accepted) {
      const argv = buildArgs(c, { refs: ['r:t'], labels: {} })
      // each build argument right after its --build-arg; context last; the Dockerfile after --file
      if (name === 'build-args')
        for (const arg of c.buildArgs) expect(argv[argv.indexOf(arg) - 1]).toBe('--build-arg')
      if (name === 'build-args') expect(c.buildArgs.join('\n')).toBe(splitLines(v).join('\n'))
      if (name === 'context' && v.trim()) expect(argv.at(-1)).toBe(v.trim())
      if (name === 'dockerfile' && v.trim()) expect(argv[argv.indexOf('--file') + 1]).toBe(v.trim())
    }
    console.log(
      `${name}: ${PER_CLASS} hostile values, ${rejected} refused, ${accepted.length} accepted as argv words`
    )
  }
)

test('env: 1000 hostile values reach the container byte for byte, none printed, nothing executed', async () => {
  // env is in dotenv form: each value double-quoted, with its \\ " newline and CR escaped (a
  // value may now hold line breaks, which reach the container through docker's environment)
  const values = hostile(3000).map((v) => v.replace(/\0/g, '_'))
  const quote = (v: string) =>
    `"${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n').replace(/\r/g, '\\r')}"`
  // in two apps: one input of 1000 escaped values would pass the kernel's 128 KiB limit on one
  // environment string, where GitHub puts each input
  const half = values.length / 2
  const runs = []
  for (const [n, part] of [values.slice(0, half), values.slice(half)].entries()) {
    const env = part.map((v, i) => `HOSTILE_${i}=${quote(v)}`).join('\n')
    const a = fixture.newApp(`hostile${n}`, { version: 'v1.0.0' }, { env })
    const run = await deployApp(a)
    expectOk(run)
    runs.push(run)
    for (let i = 0; i < part.length; i++) {
      const got = (await httpGet(`${a.url}cgi-bin/env?HOSTILE_${i}`)).body
      if (got !== `${part[i]}\n`)
        throw new Error(
          `HOSTILE_${i}: sent ${Buffer.byteLength(part[i]!)} bytes, got ${Buffer.byteLength(got) - 1}; first difference at character ${[...got].findIndex((ch, k) => ch !== [...part[i]!][k])}: sent ${JSON.stringify(part[i]!.slice(0, 80))}…, got ${JSON.stringify(got.slice(0, 80))}…`
        )
    }
  }
  // values of 3+ characters are masked; none appears in the log
  const log = runs.map(visibleLog).join('\n')
  for (const v of values)
    if (v.length >= 8 && !/^[-a-z0-9. ]*$/i.test(v)) expect(log).not.toContain(v)
  expect(existsSync(CANARY)).toBe(false)
}, 180_000)
