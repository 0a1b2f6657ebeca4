// The command line's parsing and its terminal output (the end-to-end run: e2e/cli.test.ts).
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { execFileSync } from 'node:child_process'
import {
  cli,
  parseArgs,
  repositoryOfRemote,
  terminalFilter,
  uncommitted,
  UsageError
} from '../src/cli.js'

test('flags are the inputs; BG_DEPLOY_* variables fill in; a flag wins; @FILE reads the file', () => {
  const file = path.join(mkdtempSync(path.join(tmpdir(), 'bgd-cli-')), 'key')
  writeFileSync(file, 'KEY TEXT\n')
  const a = parseArgs(
    [
      'deploy',
      '--host',
      'srv:2222',
      '--ssh-key',
      `@${file}`,
      '--app-name=shop',
      '--repository',
      'acme/shop'
    ],
    { BG_DEPLOY_USERNAME: 'deploy', BG_DEPLOY_HOST: 'other', BG_DEPLOY_HEALTH_PATH: '/healthz' }
  )
  expect(a).toEqual({
    command: 'deploy',
    repository: 'acme/shop',
    inputs: {
      host: 'srv:2222',
      'ssh-key': 'KEY TEXT\n',
      'app-name': 'shop',
      username: 'deploy',
      'health-path': '/healthz'
    },
    fromFiles: ['ssh-key'],
    json: false
  })
})

test('rollback takes a version, else previous', () => {
  expect(parseArgs(['rollback']).inputs.rollback).toBe('previous')
  expect(parseArgs(['rollback', 'v1.3.2']).inputs.rollback).toBe('v1.3.2')
})

test.each([
  [['ship'], /Unknown command 'ship'/],
  [['deploy', '--hots', 'x'], /Unknown flag --hots \(did you mean --host\?\)/],
  [['deploy', '--host-fingerprnt', 'x'], /did you mean --host-fingerprint\?/],
  [['deploy', '--ssh_key', 'x'], /did you mean --ssh-key\?/],
  [['rollback', '-x'], /Unknown option -x/],
  [['deplyo'], /Unknown command 'deplyo' \(did you mean 'deploy'\?\)/],
  [['deploy', '--host'], /--host needs a value/],
  [['deploy', 'v1'], /deploy takes no argument 'v1'/],
  [['rollback', 'v1', 'v2'], /one version at most/],
  [['deploy', '--rollback', 'previous'], /use the rollback command/],
  [['status', '--ssh-key', '@/no/such/file'], /--ssh-key @\/no\/such\/file: ENOENT/]
])('%j is refused', (argv, message) => {
  expect(() => parseArgs(argv)).toThrow(UsageError)
  expect(() => parseArgs(argv)).toThrow(message)
})

test('a true-or-false flag alone is true, --no-FLAG is false, or it takes true/false after it', () => {
  expect(parseArgs(['deploy', '--insecure-ignore-host-key', '--host', 'h']).inputs).toMatchObject({
    'insecure-ignore-host-key': 'true',
    host: 'h'
  })
  expect(parseArgs(['deploy', '--no-promote']).inputs.promote).toBe('false')
  expect(parseArgs(['deploy', '--build', 'false']).inputs.build).toBe('false')
  expect(parseArgs(['deploy', '--build']).inputs.build).toBe('true')
  expect(parseArgs(['deploy', '--create-release=false']).inputs['create-release']).toBe('false')
  // a flag that takes a value still needs one
  expect(() => parseArgs(['deploy', '--no-host'])).toThrow(/Unknown flag --no-host/)
})

test("-h and --help anywhere give the command's help (its flags by group, with defaults), not a version; --version prints the version; --json is taken", async () => {
  expect(parseArgs(['rollback', '-h'])).toMatchObject({ command: 'rollback', help: true })
  expect(parseArgs(['rollback', '-h']).inputs.rollback).toBeUndefined()
  expect(parseArgs(['deploy', '--json']).json).toBe(true)
  const out: string[] = []
  const io = { out: (l: string) => out.push(l), err: (l: string) => out.push(l), env: {}, cwd: '/' }
  for (const argv of [
    ['deploy', '--help'],
    ['rollback', '-h'],
    ['status', '--help'],
    ['help', 'deploy']
  ]) {
    out.length = 0
    expect(await cli(argv, io)).toBe(0)
    const text = out.join('\n')
    expect(text).toContain(`Usage: bg-deploy ${argv[0] === 'help' ? argv[1] : argv[0]}`)
    expect(text).toMatch(/Servers and SSH:\n {2}--host VALUE/)
    expect(text).toContain(
      '--insecure-ignore-host-key, --no-insecure-ignore-host-key (default: false)'
    )
  }
  expect(out.join('\n')).toMatch(/--container-port VALUE \(default: 8080\)\n {6}\S/)
  out.length = 0
  expect(await cli(['status', '--help'], io)).toBe(0)
  expect(out.join('\n')).not.toContain('--build-args')
  out.length = 0
  expect(await cli(['--version'], io)).toBe(0)
  expect(out).toEqual([expect.stringMatching(/^bg-deploy \d+\.\d+\.\d+/)])
})

test('a usage mistake exits 2 with the usage on stderr; --help exits 0', async () => {
  const out: string[] = []
  const err: string[] = []
  const io = { out: (l: string) => out.push(l), err: (l: string) => err.push(l), env: {}, cwd: '/' }
  expect(await cli(['deploy', '--nope', 'x'], io)).toBe(2)
  expect(err.join('\n')).toMatch(/Unknown flag --nope[\s\S]*Usage: bg-deploy/)
  expect(await cli(['--help'], io)).toBe(0)
  expect(out.join('\n')).toContain('rollback [VERSION]')
})

test.each([
  ['https://github.com/acme/shop.git', 'acme/shop'],
  ['git@github.com:acme/shop.git', 'acme/shop'],
  ['ssh://git@github.com/acme/shop', 'acme/shop'],
  ['https://gitlab.com/acme/shop.git', undefined]
])('the repository of remote %s', (url, repo) => {
  expect(repositoryOfRemote(url)).toBe(repo)
})

test('the terminal gets headings and annotations, never a workflow command, a mask or escape codes', () => {
  const lines: string[] = []
  const f = terminalFilter((l) => lines.push(l))
  f('::add-mask::s3cret-value\n::group::Build shop:v1\nstep 1\n::endgroup::\n')
  f(
    '::stop-commands::tok123\n::error::from the server\n\x1b]0;pwned\x07title \x1b[31mred\n::tok123::\n'
  )
  f('::error title=bg-deploy failed%3A 127.0.0.1%3A health shop-green::did not answer%0Aat all\n')
  f('::notice title=No release::no version\n::set-output name=x::y\npartial')
  f(' line\n')
  f(
    '::stop-commands::t2\nosc \x9d0;title\x9c dcs \x90q\x9c csi \x9b2J bidi \u202egnp.exe\n::t2::\n'
  )
  expect(lines).toEqual([
    '== Build shop:v1',
    'step 1',
    '::error::from the server',
    ']0;pwnedtitle [31mred',
    'error: bg-deploy failed: 127.0.0.1: health shop-green: did not answer\nat all',
    'notice: No release: no version',
    'partial line',
    'osc 0;title dcs q csi 2J bidi gnp.exe'
  ])
  expect(lines.join('\n')).not.toContain('s3cret-value')
  expect(lines.join('\n')).not.toContain('\x1b')
})

test('@FILE is read only for secrets and values of several lines, and a value read from a file is never quoted', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'bgd-cli-'))
  const key = path.join(dir, 'id_ed25519')
  writeFileSync(key, '-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA-SECRET\n')
  expect(() => parseArgs(['deploy', '--app-name', `@${key}`])).toThrow(
    /--app-name takes its value as written; @FILE is read only for secrets and values of several lines/
  )
  const known = path.join(dir, 'hosts')
  writeFileSync(known, 'not a known_hosts line SECRET-ISH\n')
  const a = parseArgs(['deploy', '--known-hosts', `@${known}`, '--ssh-key', `@${key}`])
  expect(a.fromFiles).toEqual(['known-hosts', 'ssh-key'])
  const err: string[] = []
  const io = { out: () => {}, err: (l: string) => err.push(l), env: {}, cwd: dir }
  expect(
    await cli(
      [
        'status',
        '--known-hosts',
        `@${known}`,
        '--ssh-key',
        `@${key}`,
        '--host',
        'h',
        '--username',
        'u',
        '--image',
        'r/x'
      ],
      io
    )
  ).toBe(1)
  expect(err.join('\n')).toMatch(/known-hosts/)
  expect(err.join('\n')).not.toMatch(/SECRET/)
})

test('deploy refuses a working tree with uncommitted changes (build: false needs none)', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'bgd-cli-'))
  const git = (...a: string[]) =>
    execFileSync('git', ['-C', dir, '-c', 'user.name=t', '-c', 'user.email=t@e', ...a])
  git('init', '-q')
  writeFileSync(path.join(dir, 'Dockerfile'), 'FROM scratch\n')
  git('add', '-A')
  git('commit', '-qm', 'v1.0.0')
  expect(uncommitted(parseArgs(['deploy']), dir)).toBeUndefined()
  writeFileSync(path.join(dir, 'Dockerfile'), 'FROM scratch\nCOPY x /\n')
  writeFileSync(path.join(dir, 'new.txt'), 'x')
  expect(uncommitted(parseArgs(['deploy']), dir)).toMatch(
    /^the working tree has 2 uncommitted change\(s\) \(Dockerfile, new\.txt\): deploy builds the working tree and labels the image with HEAD's commit/
  )
  expect(uncommitted(parseArgs(['deploy', '--build', 'false']), dir)).toBeUndefined()
})
