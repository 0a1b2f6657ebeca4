// The servers of a run as people write them (host, host:port, user@host:port, IPv6), several of
// them, the load balancer, and the inputs that only make sense together.
import { ConfigError, parseConfig, type Inputs } from '../src/config.js'
import { parseHostLine } from '../src/config-hosts.js'

const d = { port: 22, username: 'deploy' }

test.each([
  ['srv.example.com', { host: 'srv.example.com', port: 22, username: 'deploy' }],
  ['srv:2222', { host: 'srv', port: 2222, username: 'deploy' }],
  ['ops@10.0.0.5:2200', { host: '10.0.0.5', port: 2200, username: 'ops' }],
  ['[2001:db8::1]', { host: '2001:db8::1', port: 22, username: 'deploy' }],
  ['[::1]:2222', { host: '::1', port: 2222, username: 'deploy' }],
  ['fd00::7', { host: 'fd00::7', port: 22, username: 'deploy' }]
])('%s is understood', (line, want) => {
  expect(parseHostLine(line, d)).toEqual(want)
})

test.each([
  ['-oProxyCommand=x', /not a host name/],
  ['srv:99999', /port 99999 is not 1 to 65535/],
  ['[srv]:22', /not an IPv6 address/],
  ['bad user@srv', /not a user name/],
  ['a:b:c', /host, host:port/]
])('%s is refused: %s', (line, problem) => {
  expect(parseHostLine(line, d)).toMatch(problem)
})

const base: Inputs = {
  image: 'ghcr.io/acme/shop',
  username: 'deploy',
  'ssh-key': '-----BEGIN OPENSSH PRIVATE KEY-----\nx\n-----END OPENSSH PRIVATE KEY-----',
  'insecure-ignore-host-key': 'true'
}
const ctx = { repository: 'acme/shop', workspace: '/ws' }
const problems = (inputs: Inputs): string[] => {
  try {
    parseConfig({ ...base, ...inputs }, ctx)
    return []
  } catch (e) {
    return (e as ConfigError).problems
  }
}

test('hosts: one server per line, comments and blanks skipped; each its own address, port and user', () => {
  const c = parseConfig({ ...base, hosts: 'a.example\n# spare\n\nops@b.example:2200\n' }, ctx)
  expect(c.hosts.map((h) => [h.host, h.port, h.username])).toEqual([
    ['a.example', 22, 'deploy'],
    ['b.example', 2200, 'ops']
  ])
  expect(c.ssh.host).toBe('a.example')
  expect(c.fleet).toMatchObject({ several: true, promote: true, maxParallel: 0 })
})

test('one host is the plain run of today, in one go', () => {
  const c = parseConfig({ ...base, host: 'srv:2222' }, ctx)
  expect([c.ssh.host, c.ssh.port]).toEqual(['srv', 2222])
  expect(c.fleet.several).toBe(false)
  // promote: false needs the two phases on one server too
  expect(parseConfig({ ...base, host: 'srv', promote: 'false' }, ctx).fleet.several).toBe(true)
})

test('each server is pinned to its own known_hosts entry', () => {
  const key = 'AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyFakeKeyFakeKeyFakeKeyFakeKeyFakeKe'
  const c = parseConfig(
    {
      ...base,
      'insecure-ignore-host-key': 'false',
      hosts: 'a\nb',
      'known-hosts': `a ssh-ed25519 ${key}\nb ssh-ed25519 ${key.replace('Fake', 'Other')}`
    },
    ctx
  )
  expect(c.hosts[0]!.hostKeyPins).toHaveLength(1)
  expect(c.hosts[0]!.hostKeyPins[0]!.sha256).not.toBe(c.hosts[1]!.hostKeyPins[0]!.sha256)
  expect(
    problems({
      'insecure-ignore-host-key': 'false',
      hosts: 'a\nc',
      'known-hosts': `a ssh-ed25519 ${key}`
    })
  ).toEqual([expect.stringMatching(/^hosts line 2: Input 'known-hosts' has no entry for c/)])
})

test('inputs that do not go together are refused with the fix', () => {
  expect(problems({ host: 'a', hosts: 'b' })).toEqual([expect.stringMatching(/both set/)])
  expect(problems({ hosts: 'a\na:22' })).toEqual([expect.stringMatching(/a:22 is listed twice/)])
  expect(problems({ hosts: 'a\nb', 'lb-host': 'lb' })).toEqual([
    expect.stringMatching(/bind-address' is 127\.0\.0\.1, so the load balancer .* cannot reach/)
  ])
  expect(
    problems({ hosts: 'a', 'lb-host': 'lb', 'bind-address': '0.0.0.0', 'switch-mode': 'dnat' })
  ).toEqual([expect.stringMatching(/switch-mode dnat does not work with lb-host/)])
  expect(problems({ hosts: 'a', 'lb-host': 'a', 'bind-address': '0.0.0.0' })).toEqual([
    expect.stringMatching(/lb-host a:22 is also in hosts/)
  ])
  expect(problems({ host: 'a', 'bind-address': '10.0.0.5', 'switch-mode': 'dnat' })).toEqual([
    expect.stringMatching(/switch-mode dnat sends the live port to 127\.0\.0\.1/)
  ])
  expect(problems({ host: 'a', 'nginx-preview-file': 'preview.conf' })).toEqual([
    expect.stringMatching(/^Invalid nginx-preview-file 'preview.conf'\. Expected an absolute path/)
  ])
  expect(problems({ host: 'a', 'max-parallel': '-1' })).toEqual([
    expect.stringMatching(/^Invalid max-parallel/)
  ])
})

test('preview-allow: addresses and networks, only with previews', () => {
  const c = parseConfig(
    {
      ...base,
      host: 'a',
      'nginx-preview-file': '/etc/nginx/p.inc',
      'preview-allow': '203.0.113.7, 10.0.0.0/8 2001:db8::/32'
    },
    ctx
  )
  expect(c.fleet.previewAllow).toEqual(['203.0.113.7', '10.0.0.0/8', '2001:db8::/32'])
  expect(parseConfig({ ...base, host: 'a' }, ctx).fleet.previewAllow).toEqual([])
  expect(
    problems({ host: 'a', 'nginx-preview-file': '/p.inc', 'preview-allow': '10.0.0.0/33 x' })
  ).toEqual([expect.stringMatching(/^Invalid preview-allow '10\.0\.0\.0\/33 x'/)])
  expect(problems({ host: 'a', 'preview-allow': '10.0.0.1' })).toEqual([
    expect.stringMatching(
      /^Input 'preview-allow' limits the preview routes: set nginx-preview-file/
    )
  ])
})

test('watch and keep-warm: seconds, a percentage; the watch on every topology that switches, keep-warm with one server', () => {
  const c = parseConfig(
    {
      ...base,
      host: 'a',
      watch: '30',
      'watch-max-error-rate': '0.5%',
      'keep-warm': '600',
      'watch-health-only': 'true'
    },
    ctx
  )
  expect(c.after).toEqual({
    watch: 30,
    maxErrorRate: 0.5,
    maxHealthFailures: 3,
    healthOnly: true,
    keepWarm: 600,
    canary: { steps: [], stepTime: 60, key: '$remote_addr' }
  })
  expect(parseConfig({ ...base, host: 'a' }, ctx).after).toEqual({
    watch: 0,
    maxErrorRate: 1,
    maxHealthFailures: 3,
    healthOnly: false,
    keepWarm: 0,
    canary: { steps: [], stepTime: 60, key: '$remote_addr' }
  })
  expect(problems({ host: 'a', 'watch-health-only': 'yes' })).toEqual([
    expect.stringMatching(/^Invalid watch-health-only 'yes'/)
  ])
  expect(problems({ host: 'a', 'watch-max-error-rate': '101' })).toEqual([
    expect.stringMatching(
      /^Invalid watch-max-error-rate '101'\. Expected a percentage from 0 to 100/
    )
  ])
  expect(problems({ host: 'a', watch: '1.5' })).toEqual([expect.stringMatching(/^Invalid watch/)])
  expect(parseConfig({ ...base, hosts: 'a\nb', watch: '30' }, ctx).after.watch).toBe(30)
  // behind a load balancer its nginx sees every app server: watched, unless promote: false
  expect(
    parseConfig(
      { ...base, hosts: 'a\nb', 'lb-host': 'lb', 'bind-address': '0.0.0.0', watch: '30' },
      ctx
    ).after.watch
  ).toBe(30)
  expect(
    problems({
      hosts: 'a\nb',
      'lb-host': 'lb',
      'bind-address': '0.0.0.0',
      watch: '30',
      promote: 'false'
    })
  ).toEqual([expect.stringMatching(/^Input 'watch' needs promote: true/)])
  expect(problems({ hosts: 'a\nb', 'keep-warm': '30' })).toEqual([
    expect.stringMatching(/^Input 'keep-warm' works with one server/)
  ])
})

test('canary: rising percentages, with a watch that reads nginx, on one server or behind a load balancer, in reload mode', () => {
  const lb = { hosts: 'a\nb', 'lb-host': 'lb', 'bind-address': '0.0.0.0' }
  expect(
    parseConfig(
      {
        ...base,
        ...lb,
        watch: '30',
        canary: '10%, 50',
        'canary-step-time': '20',
        'canary-key': '$cookie_id'
      },
      ctx
    ).after.canary
  ).toEqual({ steps: [10, 50], stepTime: 20, key: '$cookie_id' })
  expect(
    parseConfig({ ...base, host: 'a', watch: '30', canary: '5' }, ctx).after.canary.steps
  ).toEqual([5])
  for (const canary of ['50,10', '0', '100', '10,10', 'ten'])
    expect(problems({ host: 'a', watch: '30', canary })).toEqual([
      expect.stringMatching(/^Invalid canary '.*'\. Expected up to 10 rising percentages/)
    ])
  expect(
    problems({ host: 'a', watch: '30', canary: '10', 'canary-key': '$x; return 200' })
  ).toEqual([expect.stringMatching(/^Invalid canary-key/)])
  expect(problems({ host: 'a', canary: '10' })).toEqual([
    expect.stringMatching(/^Input 'canary' needs watch/)
  ])
  expect(problems({ host: 'a', watch: '30', canary: '10', 'watch-health-only': 'true' })).toEqual([
    expect.stringMatching(/^Input 'canary' compares nginx's answers/)
  ])
  expect(problems({ host: 'a', watch: '30', canary: '10', 'switch-mode': 'dnat' })).toEqual([
    expect.stringMatching(/^Input 'canary' needs switch-mode reload/)
  ])
  expect(problems({ host: 'a', watch: '30', canary: '10', network: 'web' })).toEqual([
    expect.stringMatching(/^Input 'canary' does not work with 'network'/)
  ])
  expect(problems({ hosts: 'a\nb', watch: '30', canary: '10' })).toEqual([
    expect.stringMatching(/^Input 'canary' with several servers needs lb-host/)
  ])
  expect(problems({ host: 'a', watch: '30', canary: '10', engine: 'swarm' })).toEqual([
    expect.stringMatching(/^Input 'canary' does not apply to a Swarm service/)
  ])
  expect(
    problems({
      host: 'a',
      watch: '30',
      canary: '10,50',
      'canary-step-time': '100',
      'command-timeout': '300'
    })
  ).toEqual([
    expect.stringMatching(/^Input 'command-timeout' is 300 s.* \+ the canary steps = 320 s/)
  ])
})

test('engine swarm: one manager in host, no switch-mode, docker-run-args or keep-warm', () => {
  const c = parseConfig(
    { ...base, host: 'mgr', engine: 'swarm', replicas: '3', 'health-cmd': 'true' },
    ctx
  )
  expect(c.engine).toEqual({ kind: 'swarm', replicas: 3, healthCmd: 'true', parallelism: 1 })
  expect(parseConfig({ ...base, host: 'a' }, ctx).engine.kind).toBe('ssh')
  expect(problems({ host: 'a', engine: 'k8s' })).toEqual([
    expect.stringMatching(/^Invalid engine 'k8s'\. Expected ssh or swarm/)
  ])
  expect(
    problems({
      hosts: 'a\nb',
      engine: 'swarm',
      'switch-mode': 'dnat',
      'docker-run-args': '--memory 1g',
      'keep-warm': '5'
    })
  ).toEqual([
    expect.stringMatching(/^Input 'keep-warm' works with one server/),
    expect.stringMatching(/engine swarm deploys through one manager/),
    expect.stringMatching(/keep-warm' does not apply to a Swarm service/),
    expect.stringMatching(/does not use switch-mode/),
    expect.stringMatching(/docker-run-args' does not apply/)
  ])
})

describe('proxy-jump and the timeouts', () => {
  const FP = '256 SHA256:tqol3+MpVyntoGUocL9tj2/Ante/rOYZtYJ0yY7nPdk bastion (ED25519)'
  const KEY = '-----BEGIN OPENSSH PRIVATE KEY-----\njump\n-----END OPENSSH PRIVATE KEY-----'
  const PUB = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG+xVv25qGP0rQ6to3c4aUMNpYOMLcKhXvwLTNDnnWKi'
  const pinned: Inputs = {
    ...base,
    host: 'srv',
    'insecure-ignore-host-key': 'false',
    'host-fingerprint': FP
  }
  const cfg = (extra: Inputs) => parseConfig({ ...pinned, ...extra }, ctx)
  const refusal = (extra: Inputs) => {
    try {
      cfg(extra)
      return ''
    } catch (e) {
      return (e as ConfigError).message
    }
  }

  test('every server goes through the bastion, with its own user, key and pin', () => {
    const c = cfg({
      host: undefined,
      hosts: 'a\nb:2200',
      'proxy-jump': 'jump@bastion.example.com:2022',
      'proxy-jump-key': KEY,
      'proxy-jump-fingerprint': FP
    } as Inputs)
    expect(c.hosts).toHaveLength(2)
    for (const h of c.hosts)
      expect(h.jump).toMatchObject({
        host: 'bastion.example.com',
        port: 2022,
        username: 'jump',
        privateKey: KEY
      })
    expect(c.hosts[0]!.jump!.hostKeyPins).toHaveLength(1)
  })

  test('defaults: the user and key of the servers, port 22, the pin from known-hosts', () => {
    const c = cfg({
      'host-fingerprint': undefined,
      'known-hosts': `srv ${PUB}\nbastion ${PUB}`,
      host: 'srv',
      'proxy-jump': 'bastion'
    } as Inputs)
    expect(c.ssh.jump).toMatchObject({ host: 'bastion', port: 22, username: base.username })
    expect(c.ssh.jump!.privateKey).toBe(base['ssh-key'])
    expect(c.ssh.jump!.hostKeyPins).toHaveLength(1)
  })

  test.each([
    [
      { 'proxy-jump': 'bastion' },
      /The bastion's host key is not pinned: set 'proxy-jump-fingerprint'/
    ],
    [{ 'proxy-jump': '-oProxyCommand=x', 'proxy-jump-fingerprint': FP }, /Invalid proxy-jump/],
    [{ 'proxy-jump-key': KEY }, /belong to 'proxy-jump'/],
    [
      { 'proxy-jump': 'b', 'proxy-jump-key': 'id_rsa', 'proxy-jump-fingerprint': FP },
      /Invalid proxy-jump-key/
    ],
    [{ 'connect-timeout': '0' }, /Invalid connect-timeout '0'/],
    [
      { 'command-timeout': '60', 'health-timeout': '60' },
      /command-timeout' is 60 s, but a deploy may take health-timeout \+ drain-timeout \+ watch = 90 s/
    ]
  ])('%j is refused with the fix', (extra, message) => {
    expect(refusal(extra as Inputs)).toMatch(message)
  })

  test('timeouts: 20 s to connect; the command timeout at least what the inputs let a deploy wait', () => {
    expect(cfg({}).ssh.connectTimeout).toBe(20)
    expect(cfg({}).commandTimeout).toBe(1800)
    expect(cfg({ 'connect-timeout': '5' }).hosts[0]!.connectTimeout).toBe(5)
    expect(cfg({ watch: '3600' }).commandTimeout).toBe(60 + 30 + 3600 + 60)
    expect(cfg({ 'command-timeout': '100' }).commandTimeout).toBe(100)
  })
})

test('pre-switch-host names the server of hosts the task runs on; one not in hosts is refused', () => {
  const hosts = 'a.example\nb.example:2222\n[2001:db8::1]:22'
  const at = (name?: string) =>
    parseConfig({ ...base, hosts, ...(name ? { 'pre-switch-host': name } : {}) }, ctx).fleet
      .taskHost
  expect(at()).toBe(0)
  expect(at('b.example')).toBe(1)
  expect(at('b.example:2222')).toBe(1)
  expect(at('[2001:db8::1]:22')).toBe(2)
  expect(() => at('c.example')).toThrow(
    /Input 'pre-switch-host' \(c.example\) is not one of the servers in hosts/
  )
})
