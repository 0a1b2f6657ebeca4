// A run over several servers, through small fake servers that speak the script's protocol (stages
// on stdout, commands on stdin): who is told what, in which order, and what the run says when one
// server fails. The real script on real servers: __tests__/e2e/hosts.test.ts.
import type { Readable } from 'node:stream'
import { testConfig } from './support/config.js'
import { FleetError, fleetEvents, runFleet, type Server } from '../src/fleet.js'
import type { RemoteRequest } from '../src/remote/request.js'
import type { ExecResult } from '../src/ssh.js'

interface Behaviour {
  /** a run that overlaps the build: the script fails while it waits for the image */
  failWaiting?: string
  /** the prepare step fails with this message */
  failPrepare?: string
  /** the switch fails with this message (a host) */
  failSwitch?: string
  /** the version this server would roll back to */
  rollbackTo?: string
  /** the color the load balancer reports as idle */
  idle?: 'blue' | 'green'
  /** the image it answers with (default: the one it was sent) */
  answerImage?: string
}

interface Fake {
  server: Server
  role: () => string
  args: () => string
  /** the commands it read, in order; `eof` when its input ended first */
  commands: string[]
  /** the secret lines it was sent, before `end` */
  secrets: string[]
  log: string[]
}

let clock = 0
const tick = () => new Promise((r) => setTimeout(r, 1))

function fakeServer(host: string, b: Behaviour = {}, log: string[] = []): Fake {
  let command = ''
  const commands: string[] = []
  const secretLines: string[] = []
  const fake: Fake = {
    role: () => /'role=(\w+)'/.exec(command)?.[1] ?? 'single',
    args: () => command,
    commands,
    secrets: secretLines,
    log,
    server: {
      ssh: { host, port: 22 } as Server['ssh'],
      shell: {
        dispose() {},
        exec(cmd, o): Promise<ExecResult> {
          command = cmd
          const out = (s: string) => o.onStdout(Buffer.from(`${s}\n`))
          const arg = (k: string) => new RegExp(`'${k}=([^']*)'`).exec(cmd)?.[1] ?? ''
          const role = fake.role()
          const version =
            arg('action') === 'rollback' && role !== 'app' ? b.rollbackTo! : arg('version')
          const image = b.answerImage ?? arg('image')
          const color = role === 'app' ? arg('color') : (b.idle ?? 'green')
          return new Promise((resolve) => {
            const lines: string[] = []
            let secrets = true
            let wake: (() => void) | undefined
            const stdin = o.stdin as Readable
            let ended = false
            stdin.on('data', (d: Buffer) => {
              for (const l of d.toString().split('\n').filter(Boolean)) {
                if (secrets) {
                  if (l === 'end') secrets = false
                  // the script text comes first: a secret line is a name and base64 words
                  else if (/^(registry_password|env|run_arg)( [\w+/=]+)+$/.test(l))
                    secretLines.push(l.split(' ')[0]!)
                  continue
                }
                lines.push(l)
              }
              wake?.()
            })
            stdin.on('end', () => {
              ended = true
              wake?.()
            })
            const next = async (): Promise<string> => {
              while (lines.length === 0 && !ended) await new Promise<void>((r) => (wake = r))
              const c = lines.shift() ?? 'eof'
              commands.push(c)
              log.push(`${host} ${c}`)
              return c
            }
            const fail = (m: string) => {
              out(`::bg-deploy-error:: ${m}`)
              resolve({ code: 1, signal: null })
            }
            const done = (deployed: boolean) => {
              out(`::bg-deploy-event:: finished ${++clock}`)
              out(
                `::bg-deploy-result:: deployed=${deployed} color=${color} previous_color= version=${version} image=${image}`
              )
              resolve({ code: 0, signal: null })
            }
            void (async () => {
              await tick()
              out(`::bg-deploy-event:: begin ${++clock}`)
              const fields = `color=${color} previous_color= version=${version} image=${image}`
              if (role === 'lb') {
                out(`::bg-deploy-await:: ready ${fields}`)
                const c = await next()
                if (c === 'keep') return done(false)
                if (c !== `switch ${color}`) return fail(`told ${c}`)
                out(`::bg-deploy-await:: switched color=${color}`)
                return (await next()) === 'finish' ? done(true) : fail('undone')
              }
              // a run that overlaps the build: wait for the runner's word (steps/await.sh)
              if (Number(arg('build_wait')) > 0) {
                if (b.failWaiting) return fail(b.failWaiting)
                log.push(`${host} waits for the image`)
                const c = await next()
                if (!/^pull( blue| green)?$/.test(c))
                  return fail(`the runner said ${c}: nothing was changed here`)
              }
              log.push(`${host} prepare`)
              await tick()
              if (b.failPrepare) return fail(b.failPrepare)
              out(`::bg-deploy-event:: healthy ${++clock}`)
              out(`::bg-deploy-await:: prepared ${fields}`)
              const c = await next()
              if (c === 'keep') return done(false)
              if (role === 'app') return c === 'finish' ? done(true) : fail(`told ${c}`)
              if (c !== 'switch') return fail(`told ${c}`)
              if (b.failSwitch) return fail(b.failSwitch)
              out(`::bg-deploy-await:: switched color=${color}`)
              return (await next()) === 'finish' ? done(true) : fail('undone')
            })()
          })
        }
      }
    }
  }
  return fake
}

const req: RemoteRequest = {
  action: 'deploy',
  image: 'ghcr.io/acme/shop:v2',
  version: 'v2',
  actor: 'a',
  runUrl: 'u'
}
const quiet = () => ({ line() {}, phase() {}, warning() {} })
/** The image still building: `push(true)` once it is pushed, `push(false)` when the build failed. */
function building() {
  let push: (ok: boolean) => void = () => undefined
  const gate = new Promise<boolean>((r) => (push = r))
  return { gate, push }
}
const config = (extra: Record<string, string> = {}) =>
  testConfig({ host: '', hosts: 'a\nb\nc', ...extra })

test('every server prepares, then all switch, then all finish', async () => {
  const fakes = ['a', 'b', 'c'].map((h) => fakeServer(h))
  const r = await runFleet(
    fakes.map((f) => f.server),
    undefined,
    config(),
    req,
    quiet
  )
  for (const f of fakes) {
    expect(f.role()).toBe('host')
    expect(f.commands).toEqual(['switch', 'finish'])
  }
  expect(r).toMatchObject({ deployed: true, prepared: false, color: 'green', version: 'v2' })
  expect(r.servers.map((s) => s.state)).toEqual(['switched', 'switched', 'switched'])
})

test('one server that cannot get ready: the others are told abort, nothing switches, the message names it', async () => {
  const fakes = [fakeServer('a'), fakeServer('b', { failPrepare: 'b is sick' }), fakeServer('c')]
  const run = runFleet(
    fakes.map((f) => f.server),
    undefined,
    config(),
    req,
    quiet
  )
  await expect(run).rejects.toThrow(
    /^Nothing was switched: b could not get ready: b is sick\. The new color was removed/
  )
  expect(fakes[0]!.commands).toEqual(['abort'])
  expect(fakes[2]!.commands).toEqual(['abort'])
  const e = (await run.catch((x: unknown) => x)) as FleetError
  expect(e.servers.map((s) => [s.name, s.state])).toEqual([
    ['a', 'aborted'],
    ['b', 'failed'],
    ['c', 'aborted']
  ])
})

test('one server that cannot switch: every server is told undo', async () => {
  const fakes = [
    fakeServer('a'),
    fakeServer('b', { failSwitch: 'nginx -t failed' }),
    fakeServer('c')
  ]
  await expect(
    runFleet(
      fakes.map((f) => f.server),
      undefined,
      config(),
      req,
      quiet
    )
  ).rejects.toThrow(
    /^b could not switch: nginx -t failed\. Every server that had switched switched back/
  )
  expect(fakes[0]!.commands).toEqual(['switch', 'undo'])
  expect(fakes[2]!.commands).toEqual(['switch', 'undo'])
})

test('max-parallel 1: the next server starts preparing only once the one before is ready', async () => {
  const log: string[] = []
  const fakes = ['a', 'b', 'c'].map((h) => fakeServer(h, {}, log))
  await runFleet(
    fakes.map((f) => f.server),
    undefined,
    config({ 'max-parallel': '1' }),
    req,
    quiet
  )
  expect(log.filter((l) => l.endsWith('prepare'))).toEqual(['a prepare', 'b prepare', 'c prepare'])
  expect(log.indexOf('b prepare')).toBeGreaterThan(log.indexOf('a prepare'))
})

test('a load balancer: it names the color, the app servers start it, one switch on it, then all finish', async () => {
  const apps = ['a', 'b'].map((h) => fakeServer(h))
  const lb = fakeServer('lb', { idle: 'blue' })
  const r = await runFleet(
    apps.map((f) => f.server),
    lb.server,
    config({ hosts: 'a\nb', 'lb-host': 'lb', 'bind-address': '0.0.0.0' }),
    req,
    quiet
  )
  expect(lb.role()).toBe('lb')
  expect(lb.args()).toContain("'lb_servers=a,b'")
  for (const f of apps) {
    expect(f.role()).toBe('app')
    expect(f.args()).toContain("'color=blue'")
    expect(f.commands).toEqual(['finish'])
  }
  expect(lb.commands).toEqual(['switch blue', 'finish'])
  expect(r).toMatchObject({ deployed: true, color: 'blue' })
})

test('promote: false: every server is told keep, nothing switches', async () => {
  const fakes = ['a', 'b'].map((h) => fakeServer(h))
  const r = await runFleet(
    fakes.map((f) => f.server),
    undefined,
    config({ hosts: 'a\nb', promote: 'false' }),
    req,
    quiet
  )
  for (const f of fakes) expect(f.commands).toEqual(['keep'])
  expect(r).toMatchObject({ deployed: false, prepared: true, color: 'green' })
})

test('a rollback where the servers would go back to different versions is refused before any switch', async () => {
  const fakes = [fakeServer('a', { rollbackTo: 'v1' }), fakeServer('b', { rollbackTo: 'v0' })]
  await expect(
    runFleet(
      fakes.map((f) => f.server),
      undefined,
      config({ hosts: 'a\nb' }),
      {
        ...req,
        action: 'rollback',
        target: 'previous',
        image: 'ghcr.io/acme/shop:latest',
        version: undefined
      },
      quiet
    )
  ).rejects.toThrow(/would roll back to different versions \(a: v1, b: v0\).*Name the version/)
  for (const f of fakes) expect(f.commands).toEqual(['abort'])
})

test("the fleet's timeline: begin and pull at the first server, every other step at the last", () => {
  expect(
    fleetEvents([
      [
        { name: 'begin', ms: 10 },
        { name: 'healthy', ms: 50 }
      ],
      [
        { name: 'begin', ms: 5 },
        { name: 'healthy', ms: 70 }
      ]
    ])
  ).toEqual([
    { name: 'begin', ms: 5 },
    { name: 'healthy', ms: 70 }
  ])
})

test('a deploy runs the image sent, whatever a server answers: a load balancer that names another is refused, nothing starts', async () => {
  const lb = fakeServer('lb', { answerImage: 'ghcr.io/acme/shop:evil' })
  const apps = ['a', 'b'].map((h) => fakeServer(h))
  const run = runFleet(
    apps.map((f) => f.server),
    lb.server,
    config({ hosts: 'a\nb', 'lb-host': 'lb', 'bind-address': '0.0.0.0' }),
    req,
    quiet
  )
  await expect(run).rejects.toThrow(
    /could not start the run: The server's answer was malformed: image is "ghcr.io\/acme\/shop:evil", not the image sent \(ghcr.io\/acme\/shop:v2\)/
  )
  for (const f of apps) expect(f.args()).toBe('')
  // an app server that answers another image fails its prepare: nothing switches
  const bad = [
    fakeServer('a'),
    fakeServer('b', { answerImage: 'ghcr.io/acme/shop@sha256:' + 'e'.repeat(64) })
  ]
  await expect(
    runFleet(
      bad.map((f) => f.server),
      undefined,
      config({ hosts: 'a\nb' }),
      req,
      quiet
    )
  ).rejects.toThrow(/b could not get ready: The server's answer was malformed: image is/)
  expect(bad[0]!.commands).toEqual(['abort'])
})

test('the load balancer is sent no secret; each app server the env, run arguments and pull credential', async () => {
  const lb = fakeServer('lb')
  const apps = ['a', 'b'].map((h) => fakeServer(h))
  await runFleet(
    apps.map((f) => f.server),
    lb.server,
    config({
      hosts: 'a\nb',
      'lb-host': 'lb',
      'bind-address': '0.0.0.0',
      env: 'A=1\nB=2',
      'docker-run-args': '--memory 1g',
      'pull-registry-username': 'r',
      'pull-registry-password': 'pw'
    }),
    req,
    quiet
  )
  expect(lb.secrets).toEqual([])
  for (const f of apps)
    expect(f.secrets).toEqual(['registry_password', 'env', 'env', 'run_arg', 'run_arg'])
})

test('a deploy that overlaps the build: every server gets ready and waits; once the image is pushed all pull, then switch as one', async () => {
  const log: string[] = []
  const fakes = ['a', 'b', 'c'].map((h) => fakeServer(h, {}, log))
  const { gate, push } = building()
  const run = runFleet(
    fakes.map((f) => f.server),
    undefined,
    config(),
    { ...req, buildWait: 3600 },
    quiet,
    gate
  )
  for (let i = 0; i < 20 && log.length < 3; i++) await tick()
  // all three started while the image still builds, and none prepares before it is pushed
  expect(log.sort()).toEqual([
    'a waits for the image',
    'b waits for the image',
    'c waits for the image'
  ])
  push(true)
  const r = await run
  for (const f of fakes) expect(f.commands).toEqual(['pull', 'switch', 'finish'])
  expect(r).toMatchObject({ deployed: true, version: 'v2' })
})

test('a deploy that overlaps the build, and the build fails: every server and the load balancer are told abort, nothing is changed', async () => {
  const lb = fakeServer('lb')
  const fakes = ['a', 'b'].map((h) => fakeServer(h))
  const run = runFleet(
    fakes.map((f) => f.server),
    lb.server,
    config({ hosts: 'a\nb', 'lb-host': 'lb', 'bind-address': '0.0.0.0' }),
    { ...req, buildWait: 3600 },
    quiet,
    Promise.resolve(false)
  )
  await expect(run).rejects.toThrow(/^The image was not pushed .*nothing was changed on any server/)
  for (const f of [lb, ...fakes]) expect(f.commands).toEqual(['abort'])
  const e = (await run.catch((x: unknown) => x)) as FleetError
  expect(e.servers.map((s) => s.state)).toEqual(['untouched', 'untouched', 'untouched'])
})

test('a deploy that overlaps the build, and a server fails while the image builds: once pushed, nothing is switched and the run says why (it does not wait for that server)', async () => {
  const fakes = [fakeServer('a'), fakeServer('b', { failWaiting: 'the watch would not see nginx' })]
  const { gate, push } = building()
  const run = runFleet(
    fakes.map((f) => f.server),
    undefined,
    config({ hosts: 'a\nb' }),
    { ...req, buildWait: 3600 },
    quiet,
    gate
  )
  // b's script has ended before the image is pushed
  for (let i = 0; i < 20; i++) await tick()
  push(true)
  await expect(run).rejects.toThrow(
    /^Nothing was switched: b could not get ready: the watch would not see nginx/
  )
  expect(fakes[0]!.commands).toEqual(['pull', 'abort'])
})

test('a deploy that overlaps the build behind a load balancer: the app servers start beside it, before it names the color, and hear the color with pull', async () => {
  const lb = fakeServer('lb', { idle: 'blue' })
  const fakes = ['a', 'b'].map((h) => fakeServer(h))
  const { gate, push } = building()
  const run = runFleet(
    fakes.map((f) => f.server),
    lb.server,
    config({ hosts: 'a\nb', 'lb-host': 'lb', 'bind-address': '0.0.0.0' }),
    { ...req, buildWait: 3600 },
    quiet,
    gate
  )
  for (let i = 0; i < 20; i++) await tick()
  for (const f of fakes) {
    expect(f.role()).toBe('app')
    expect(f.args()).not.toMatch(/'color=/)
  }
  push(true)
  const r = await run
  for (const f of fakes) expect(f.commands).toEqual(['pull blue', 'finish'])
  expect(lb.commands).toEqual(['switch blue', 'finish'])
  expect(r).toMatchObject({ deployed: true, color: 'blue' })
})
