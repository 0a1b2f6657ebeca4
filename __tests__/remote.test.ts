import { execFileSync } from 'node:child_process'
import { pullCredentialNote } from '../src/config.js'
import { testConfig } from './support/config.js'
import {
  MAX_EVENTS,
  MAX_HISTORY,
  MAX_LINE,
  MAX_WARNINGS,
  OutputParser
} from '../src/remote/output.js'
import { remoteCommand, remoteStdin, scriptArgs, shellQuote } from '../src/remote/request.js'
import { runRemote } from '../src/remote/session.js'
import type { ExecResult, RemoteShell } from '../src/ssh.js'

const config = testConfig({
  'app-name': 'shop',
  'registry-username': 'bot',
  'registry-password': 'pa55word',
  'push-credential-to-servers': 'true',
  env: 'DB_URL=postgres://u:p@h/db\nQUOTE=it\'s "$(rm -rf /)"`id`',
  'docker-run-args': `--memory 256m --label 'a b'`
})
const req = {
  action: 'deploy' as const,
  image: 'ghcr.io/acme/shop:v1',
  version: 'v1',
  actor: 'octo',
  runUrl: 'https://x/runs/1'
}

test.each(['plain', "it's", '$(id)', '`id`', 'a\nb', "'", ''])(
  'shellQuote(%j) survives a real shell',
  (word) => {
    expect(execFileSync('bash', ['-c', `printf %s ${shellQuote(word)}`]).toString()).toBe(word)
  }
)

test('arguments carry every non-secret parameter and no secret', () => {
  const args = scriptArgs(config, req)
  expect(args).toEqual(
    expect.arrayContaining([
      'action=deploy',
      'app=shop',
      'image=ghcr.io/acme/shop:v1',
      'health_path=/',
      'upstream_file=/etc/nginx/conf.d/shop-upstream.conf',
      'nginx_reload=nginx -s reload',
      'switch_mode=reload',
      'live_port=8083',
      'registry_user=bot'
    ])
  )
  const command = remoteCommand(args)
  expect(command.startsWith("bash -s -- 'action=deploy' ")).toBe(true)
  // docker-run-args may embed a secret: they ride on stdin, never on the command line
  for (const secret of ['pa55word', 'postgres://', 'rm -rf', '256m', 'a b'])
    expect(command).not.toContain(secret)
  expect(args.some((a) => a.startsWith('run_arg'))).toBe(false)
})

test('secrets follow the script on stdin, base64-encoded, ending with end', () => {
  const stdin = remoteStdin('echo script', config)
  const lines = stdin.split('\n')
  expect(lines[0]).toBe('echo script')
  expect(lines[1]).toBe(`registry_password ${Buffer.from('pa55word').toString('base64')}`)
  expect(lines[2]).toBe(`env DB_URL ${Buffer.from('postgres://u:p@h/db').toString('base64')}`)
  expect(Buffer.from(lines[3]!.split(' ')[2]!, 'base64').toString()).toBe(
    `it's "$(rm -rf /)"\`id\``
  )
  const runArgs = lines.slice(4, 8)
  expect(runArgs.map((l) => l.split(' ')[0])).toEqual(Array(4).fill('run_arg'))
  expect(runArgs.map((l) => Buffer.from(l.split(' ')[1]!, 'base64').toString())).toEqual([
    '--memory',
    '256m',
    '--label',
    'a b'
  ])
  expect(lines.slice(8)).toEqual(['end', ''])
})

test.each([
  ['single', ['registry_password', 'env', 'env', 'run_arg', 'run_arg', 'run_arg', 'run_arg']],
  ['host', ['registry_password', 'env', 'env', 'run_arg', 'run_arg', 'run_arg', 'run_arg']],
  ['app', ['registry_password', 'env', 'env', 'run_arg', 'run_arg', 'run_arg', 'run_arg']],
  ['lb', []],
  ['status', []]
] as const)('role %s is sent exactly the secret lines its steps read', (role, expected) => {
  const pulling = testConfig({
    'app-name': 'shop',
    'pull-registry-username': 'reader',
    'pull-registry-password': 'r3ad0nly',
    env: 'DB_URL=postgres://u:p@h/db\nQUOTE=x',
    'docker-run-args': `--memory 256m --label 'a b'`
  })
  const stdin = remoteStdin('', pulling, role)
  const names = stdin
    .split('\n')
    .filter(Boolean)
    .map((l) => l.split(' ')[0])
  expect(names).toEqual([...expected, 'end'])
  if (role === 'lb' || role === 'status')
    for (const s of ['r3ad0nly', 'postgres', '256m'].map((x) => Buffer.from(x).toString('base64')))
      expect(stdin).not.toContain(s.slice(0, 8))
})

test('the parser splits chunks into lines, reads markers, and defuses workflow commands', () => {
  const seen: string[] = []
  const p = new OutputParser({
    line: (l) => seen.push(`line ${l}`),
    phase: (n) => seen.push(`phase ${n}`),
    warning: (w) => seen.push(`warning ${w}`)
  })
  p.push(
    'out',
    '::bg-deploy-warning:: no live-restore\n::bg-deploy-phase:: pull\n::bg-deploy-event:: pu'
  )
  p.push('out', 'll 1700000000123\n')
  p.push('err', '==> pulling\n::set-output name=x::y\n::bg-deploy-result:: deployed=false\npartial')
  p.push(
    'out',
    '::bg-deploy-history:: 2026-11-22T10:00:00Z\toctocat\thttps://x/runs/1\tdeploy\tv1\tr:v1\tblue\tok\n'
  )
  p.push(
    'out',
    '::bg-deploy-result:: deployed=true color=green previous_color= version=v1 image=r:v1\n'
  )
  p.flush()
  expect(seen).toEqual([
    'warning no live-restore',
    'phase pull',
    'line ==> pulling',
    'line ::set-output name=x::y',
    'line ::bg-deploy-result:: deployed=false',
    'line partial'
  ])
  expect(p.events).toEqual([{ name: 'pull', ms: 1700000000123 }])
  expect(p.history).toEqual([
    {
      time: '2026-11-22T10:00:00Z',
      actor: 'octocat',
      runUrl: 'https://x/runs/1',
      action: 'deploy',
      version: 'v1',
      image: 'r:v1',
      color: 'blue',
      result: 'ok'
    }
  ])
  expect(p.result).toEqual({
    deployed: 'true',
    color: 'green',
    previous_color: '',
    version: 'v1',
    image: 'r:v1'
  })
})

class FakeShell implements RemoteShell {
  commands: string[] = []
  constructor(
    private readonly out: string,
    private readonly result: ExecResult
  ) {}
  async exec(command: string, o: { onStdout: (c: Buffer) => void }) {
    this.commands.push(command)
    o.onStdout(Buffer.from(this.out))
    return this.result
  }
  dispose() {}
}

const log = { line: () => {}, phase: () => {}, warning: () => {} }

test('runRemote returns the result line as a result', async () => {
  const shell = new FakeShell(
    '::bg-deploy-result:: deployed=true color=blue previous_color=green version=v1 image=ghcr.io/acme/shop:v1\n',
    { code: 0, signal: null }
  )
  expect(await runRemote(shell, config, req, log, 'script')).toEqual({
    deployed: true,
    color: 'blue',
    previousColor: 'green',
    version: 'v1',
    image: 'ghcr.io/acme/shop:v1',
    events: [],
    history: []
  })
})

test.each([
  ['::bg-deploy-error:: nginx said no\n', { code: 1, signal: null }, /^nginx said no$/],
  [
    '',
    { code: null, signal: null },
    /SSH session ended before the deploy finished.*re-run the workflow/
  ],
  ['boom\n', { code: 2, signal: null }, /exit code 2 and no result\. Last output:\nboom/]
])('runRemote explains a failure: %j', async (out, result, message) => {
  await expect(runRemote(new FakeShell(out, result), config, req, log, 'script')).rejects.toThrow(
    message
  )
})

test('markers count only on stdout; stderr text that looks like one is shown, not read', () => {
  const seen: string[] = []
  const p = new OutputParser({
    line: (l) => seen.push(l),
    phase: (n) => seen.push(`phase ${n}`),
    warning: (w) => seen.push(`warning ${w}`)
  })
  p.push('err', '::bg-deploy-error:: forged\n::bg-deploy-event:: finished 1\n')
  p.push('out', '::bg-deploy-event:: not-declared 5\n::bg-deploy-event:: pulled 7\n')
  p.push('out', '::bg-deploy-error:: line one\\nline two \\\\n\n')
  p.flush()
  expect(p.error).toBe('line one\nline two \\n')
  expect(p.events).toEqual([{ name: 'pulled', ms: 7 }])
  expect(seen).toEqual(['::bg-deploy-error:: forged', '::bg-deploy-event:: finished 1'])
})

test('a line without a newline is cut at MAX_LINE: the runner keeps a bounded buffer', () => {
  const seen: string[] = []
  const p = new OutputParser({ line: (l) => seen.push(l), phase: () => {}, warning: () => {} })
  for (let i = 0; i < 10; i++) p.push('err', 'x'.repeat(MAX_LINE / 2))
  expect((p as unknown as { buffers: { err: string } }).buffers.err.length).toBeLessThanOrEqual(
    MAX_LINE
  )
  p.flush()
  expect(seen.map((l) => l.length)).toEqual([MAX_LINE, MAX_LINE, MAX_LINE, MAX_LINE, MAX_LINE])
})

test('a UTF-8 character split across two chunks stays whole', () => {
  const seen: string[] = []
  const p = new OutputParser({ line: (l) => seen.push(l), phase: () => {}, warning: () => {} })
  const bytes = Buffer.from('ü日\n')
  p.push('err', bytes.subarray(0, 1))
  p.push('err', bytes.subarray(1))
  expect(seen).toEqual(['ü日'])
})

test.each([
  [
    'color=$(id)',
    'deployed=true color=$(id) previous_color= version=v1 image=ghcr.io/acme/shop:v1',
    /color is "\$\(id\)", not blue or green/
  ],
  [
    'previous color',
    'deployed=true color=blue previous_color=red version=v1 image=ghcr.io/acme/shop:v1',
    /previous_color is "red"/
  ],
  [
    'another image',
    'deployed=true color=blue previous_color= version=v1 image=evil.io/x:v1',
    /image is "evil\.io\/x:v1", not the image sent/
  ],
  [
    'an image with a command',
    'deployed=true color=blue previous_color= version=v1 image=ghcr.io/acme/shop:v1;id',
    /image is/
  ],
  [
    'another version',
    'deployed=true color=blue previous_color= version=v2 image=ghcr.io/acme/shop:v1',
    /version is "v2", not the version sent/
  ],
  [
    'a previous version that is no version',
    'deployed=true color=blue previous_color= version=v1 image=ghcr.io/acme/shop:v1 previous_version=$(id)',
    /previous_version is "\$\(id\)", which is not a version/
  ],
  ['deployed', 'deployed=yes color=blue', /deployed is "yes"/],
  ['extra field', 'deployed=true color=blue x=1', /unknown result fields/],
  [
    'a count that is no count',
    'deployed=true color=blue previous_color= version=v1 image=ghcr.io/acme/shop:v1 open_connections=$(id)',
    /open_connections is "\$\(id\)", not a count/
  ],
  [
    'watch counts that are no counts',
    'deployed=true color=blue previous_color= version=v1 image=ghcr.io/acme/shop:v1 open_connections=0 watch=1,2,3',
    /watch is "1,2,3", not four counts/
  ]
])('a server answering %s fails the run as malformed', async (_, line, message) => {
  const shell = new FakeShell(`::bg-deploy-result:: ${line}\n`, { code: 0, signal: null })
  const run = runRemote(shell, config, req, log, 'script')
  await expect(run).rejects.toThrow(/The server's answer was malformed/)
  await expect(runRemote(shell, config, req, log, 'script')).rejects.toThrow(message)
})

test('the connections still open when the drain ended come back as a number', async () => {
  const shell = new FakeShell(
    '::bg-deploy-result:: deployed=true color=blue previous_color=green version=v1 image=ghcr.io/acme/shop:v1 open_connections=7\n',
    { code: 0, signal: null }
  )
  expect((await runRemote(shell, config, req, log, 'script')).openConnections).toBe(7)
})

test("the watch's counts come back as numbers: the new version's answers and 5xx, the old one's before the switch", async () => {
  const shell = new FakeShell(
    '::bg-deploy-result:: deployed=true color=blue previous_color=green version=v1 image=ghcr.io/acme/shop:v1 open_connections=0 watch=2104,87,580,3\n',
    { code: 0, signal: null }
  )
  const r = await runRemote(shell, config, req, log, 'script')
  expect(r.watch).toEqual({ total: 2104, bad: 87, baseTotal: 580, baseBad: 3 })
  expect(r.openConnections).toBe(0)
})

test('a rollback answer needs a version that passes the version rules', async () => {
  const rollback = { ...req, action: 'rollback' as const, version: undefined, target: 'previous' }
  const answer = (v: string) =>
    new FakeShell(
      `::bg-deploy-result:: deployed=true color=blue previous_color=green version=${v} image=ghcr.io/acme/shop@sha256:${'a'.repeat(64)}\n`,
      { code: 0, signal: null }
    )
  expect((await runRemote(answer('v1.2.0'), config, rollback, log, 'script')).version).toBe(
    'v1.2.0'
  )
  await expect(runRemote(answer('$(id)'), config, rollback, log, 'script')).rejects.toThrow(
    /malformed: version is "\$\(id\)"/
  )
})

test('the server gets the pull credential, never the push one, when one is given', () => {
  const c = testConfig({
    'registry-username': 'pusher',
    'registry-password': 'push-secret',
    'pull-registry-username': 'puller',
    'pull-registry-password': 'pull-secret'
  })
  const stdin = remoteStdin('script', c)
  const args = scriptArgs(c, req)
  expect(args).toContain('registry_user=puller')
  expect(stdin).toContain(Buffer.from('pull-secret').toString('base64'))
  expect(stdin + args.join(' ')).not.toContain(Buffer.from('push-secret').toString('base64'))
  expect(stdin + args.join(' ')).not.toMatch(/push-secret|pusher/)
  // without a pull credential the servers pull anonymously: no silent fallback to the push one
  const pushOnly = testConfig({ 'registry-username': 'pusher', 'registry-password': 'push-secret' })
  expect(pushOnly.pull).toEqual({ source: 'none' })
  expect(scriptArgs(pushOnly, req).join(' ')).not.toContain('pusher')
  expect(remoteStdin('script', pushOnly)).not.toContain('registry_password')
  expect(pullCredentialNote(pushOnly)).toMatch(/anonymously/)
  // only when the workflow says so by name
  expect(scriptArgs(config, req)).toContain('registry_user=bot')
  expect(pullCredentialNote(config)).toMatch(
    /push credential \(bot\), as push-credential-to-servers/
  )
  expect(pullCredentialNote(c)).toMatch(/as puller \(pull-registry-username\)/)
})

test("a deploy's answer must name the image sent: another tag or digest of the same repository is refused", async () => {
  const answer = (image: string) =>
    new FakeShell(
      `::bg-deploy-result:: deployed=true color=blue previous_color=green version=v1 image=${image}\n`,
      { code: 0, signal: null }
    )
  expect((await runRemote(answer('ghcr.io/acme/shop:v1'), config, req, log, 'script')).image).toBe(
    'ghcr.io/acme/shop:v1'
  )
  for (const other of ['ghcr.io/acme/shop:latest', `ghcr.io/acme/shop@sha256:${'b'.repeat(64)}`])
    await expect(runRemote(answer(other), config, req, log, 'script')).rejects.toThrow(
      /malformed: image is .*, not the image sent \(ghcr.io\/acme\/shop:v1\)/
    )
})

test('one sanitizer for every string from a server: C0, C1 (OSC 0x9d, DCS 0x90, CSI 0x9b), ESC and bidi overrides never reach a log, message or history row', () => {
  const seen: string[] = []
  const p = new OutputParser({
    line: (l) => seen.push(l),
    phase: (n) => seen.push(n),
    warning: (w) => seen.push(w)
  })
  const nasty = 'a\x1b]0;pwned\x07b\x9d0;title\x9c c\x90dcs\x9c d\x9b2J e\u202egnp.exe f\rg'
  p.push('err', `${nasty}\n`)
  p.push('out', `::bg-deploy-warning:: w ${nasty}\n`)
  p.push('out', `::bg-deploy-error:: e \\r${nasty}\\nsecond line\n`)
  p.push('out', `::bg-deploy-history:: t\tactor\x9d\tu\tdeploy\tv1\tr:v1\tblue\tok\n`)
  p.flush()
  const clean = 'a]0;pwnedb0;title cdcs d2J egnp.exe fg'
  expect(seen).toEqual([clean, `w ${clean}`])
  expect(p.error).toBe(`e ${clean}\nsecond line`)
  expect(p.history.map((h) => h.actor)).toEqual(['actor'])
  for (const s of [...seen, p.error!, ...p.tail])
    expect(s).not.toMatch(/[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]/)
})

test('what a server can make the runner hold is bounded: history rows, events and warnings per run', () => {
  let warnings = 0
  const p = new OutputParser({ line() {}, phase() {}, warning: () => warnings++ })
  for (let i = 0; i < 5000; i++) {
    p.push('out', `::bg-deploy-history:: t${i}\ta\tu\tdeploy\tv1\tr:v1\tblue\tok\n`)
    p.push('out', `::bg-deploy-event:: begin ${i}\n`)
    p.push('out', `::bg-deploy-warning:: w${i}\n`)
  }
  p.flush()
  expect(p.history).toHaveLength(MAX_HISTORY)
  expect(p.history.at(-1)!.time).toBe('t4999')
  expect(p.events).toHaveLength(MAX_EVENTS)
  expect(warnings).toBe(MAX_WARNINGS)
})

describe('a real application on the wire', () => {
  const c = testConfig({
    'pre-switch-command': "bin/migrate --to 'v 2'",
    workers: 'jobs: bin/jobs\nscheduler single stop-timeout=60: bin/cron',
    'health-path': '/up'
  })
  const base = { image: 'ghcr.io/acme/shop:v2', version: 'v2', actor: 'a', runUrl: 'u' }
  const param = (args: string[], name: string) =>
    args.find((a) => a.startsWith(`${name}=`))?.slice(name.length + 1)
  const b64 = (s: string) => Buffer.from(s, 'base64').toString('utf8')

  test('the task goes to the one server that runs it: a deploy alone, or the task session; never a rollback or a fleet role', () => {
    const words = (args: string[]) => b64(param(args, 'task') ?? '').split('\0')
    expect(words(scriptArgs(c, { ...base, action: 'deploy' }))).toEqual([
      'bin/migrate',
      '--to',
      'v 2'
    ])
    expect(words(scriptArgs(c, { ...base, action: 'task' }))).toEqual([
      'bin/migrate',
      '--to',
      'v 2'
    ])
    for (const req of [
      { ...base, action: 'rollback' as const },
      { ...base, action: 'deploy' as const, role: 'host' as const },
      { ...base, action: 'deploy' as const, role: 'app' as const }
    ])
      expect(param(scriptArgs(c, req), 'task')).toBeUndefined()
  })

  test('workers: one tab-separated line each; single_workers only where it is not here', () => {
    const args = scriptArgs(c, { ...base, action: 'deploy' })
    const lines = b64(param(args, 'workers')!)
      .split('\n')
      .map((l) => l.split('\t'))
    expect(lines.map(([n, s, sig, t, w]) => [n, s, sig, t, b64(w!)])).toEqual([
      ['jobs', '0', 'SIGTERM', '30', 'bin/jobs'],
      ['scheduler', '1', 'SIGTERM', '60', 'bin/cron']
    ])
    expect(param(args, 'single_workers')).toBeUndefined()
    expect(
      param(
        scriptArgs(c, { ...base, action: 'deploy', singleWorkers: 'elsewhere' }),
        'single_workers'
      )
    ).toBe('elsewhere')
  })

  test('explicit: a rollback names the run spec items its inputs set, a deploy none', () => {
    expect(
      param(scriptArgs(c, { ...base, action: 'rollback', target: 'previous' }), 'explicit')
    ).toBe('health_path,task,workers')
    expect(param(scriptArgs(c, { ...base, action: 'deploy' }), 'explicit')).toBeUndefined()
  })
})
