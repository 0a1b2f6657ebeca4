import { execFileSync } from 'node:child_process'
import { parseConfig } from '../src/config.js'
import {
  OutputParser,
  remoteCommand,
  remoteStdin,
  runRemote,
  scriptArgs,
  shellQuote
} from '../src/remote.js'
import type { ExecResult, RemoteShell } from '../src/ssh.js'

const config = parseConfig(
  {
    image: 'ghcr.io/acme/shop',
    host: 'h',
    username: 'u',
    'ssh-key': '-----BEGIN OPENSSH PRIVATE KEY-----\nx\n-----END OPENSSH PRIVATE KEY-----',
    'insecure-ignore-host-key': 'true',
    'app-name': 'shop',
    'registry-username': 'bot',
    'registry-password': 'pa55word',
    env: 'DB_URL=postgres://u:p@h/db\nQUOTE=it\'s "$(rm -rf /)"`id`',
    'docker-run-args': `--memory 256m --label 'a b'`
  },
  { repository: 'acme/shop', workspace: '/ws' }
)
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
      'registry_user=bot',
      'run_arg=--memory',
      'run_arg=256m',
      'run_arg=--label',
      'run_arg=a b'
    ])
  )
  const command = remoteCommand(args)
  expect(command.startsWith("bash -s -- 'action=deploy' ")).toBe(true)
  for (const secret of ['pa55word', 'postgres://', 'rm -rf']) expect(command).not.toContain(secret)
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
  expect(lines.slice(4)).toEqual(['end', ''])
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
  p.push('err', '==> pulling\n::set-output name=x::y\npartial')
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
    'line  ::set-output name=x::y',
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
    '::bg-deploy-result:: deployed=true color=blue previous_color=green version=v1 image=r:v1\n',
    { code: 0, signal: null }
  )
  expect(await runRemote(shell, config, req, log, 'script')).toEqual({
    deployed: true,
    color: 'blue',
    previousColor: 'green',
    version: 'v1',
    image: 'r:v1',
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
