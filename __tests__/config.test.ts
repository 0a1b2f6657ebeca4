import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { testConfig } from './support/config.js'
import {
  ConfigError,
  loadConfig,
  mergeInputs,
  parseConfig,
  parseConfigFile,
  registryOf,
  type Inputs
} from '../src/config.js'

const KEY = '-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n'
const FP = '256 SHA256:DB/ihW3YcsW1nKY+ts0Ok8lXF95S4AtNpu00w95d52s host (ED25519)'
const ctx = { repository: 'acme/Shop.Web', workspace: '/ws' }
const base: Inputs = {
  image: 'ghcr.io/acme/shop',
  host: 'deploy.example.com',
  username: 'deploy',
  'ssh-key': KEY,
  'host-fingerprint': FP
}

function problems(inputs: Inputs): string[] {
  try {
    parseConfig(inputs, ctx)
  } catch (e) {
    if (e instanceof ConfigError) return e.problems
    throw e
  }
  return []
}

test('defaults', () => {
  const c = parseConfig(base, ctx)
  expect(c).toMatchObject({
    image: 'ghcr.io/acme/shop',
    registry: 'ghcr.io',
    context: '.',
    dockerfile: 'Dockerfile',
    createRelease: true,
    ssh: { host: 'deploy.example.com', port: 22, username: 'deploy', insecureIgnoreHostKey: false },
    app: {
      name: 'shop.web',
      containerPort: 8080,
      bluePort: 8081,
      greenPort: 8082,
      env: [],
      dockerRunArgs: []
    },
    health: { path: '/', timeout: 60, interval: 0.05 },
    drainTimeout: 30,
    nginx: {
      upstreamFile: '/etc/nginx/conf.d/shop.web-upstream.conf',
      upstreamName: 'shop.web',
      testCommand: 'nginx -t',
      reloadCommand: 'nginx -s reload'
    },
    switch: { mode: 'reload', livePort: 8083 }
  })
  expect(c.ssh.hostKeyPins).toEqual([
    {
      sha256: 'DB/ihW3YcsW1nKY+ts0Ok8lXF95S4AtNpu00w95d52s',
      algorithms: ['ssh-ed25519'],
      source: 'host-fingerprint line 1'
    }
  ])
  expect(c.rollback).toBeUndefined()
  expect(c.version).toBeUndefined()
})

test('values are parsed into their types', () => {
  const c = parseConfig(
    {
      ...base,
      'app-name': 'shop',
      'health-interval': '0.25',
      'drain-timeout': '0',
      'create-release': 'FALSE',
      env: 'A=1\n# comment\n\nB= spaced value \nC=x=y\r\n',
      'docker-run-args': `--memory 256m --label 'a b'`,
      'build-args': 'X=1\n\nY=2',
      rollback: 'previous',
      dockerfile: 'docker/Dockerfile'
    },
    ctx
  )
  expect(c.health.interval).toBe(0.25)
  expect(c.drainTimeout).toBe(0)
  expect(c.createRelease).toBe(false)
  expect(c.app.env).toEqual([
    ['A', '1'],
    ['B', ' spaced value '],
    ['C', 'x=y']
  ])
  expect(c.app.dockerRunArgs).toEqual(['--memory', '256m', '--label', 'a b'])
  expect(c.buildArgs).toEqual(['X=1', 'Y=2'])
  expect(c.rollback).toBe('previous')
  expect(c.dockerfile).toBe('docker/Dockerfile')
})

test.each([
  ['image', 'Shop', /Invalid image 'Shop'/],
  ['image', 'ghcr.io/acme/shop:v1', /without a tag/],
  ['image', 'ghcr.io/acme/shop@sha256:00', /without a tag or digest/],
  ['image', 'ghcr.io/Acme/Shop', /registries refuse capitals, so write ghcr.io\/acme\/shop/],
  ['port', '0', /Invalid port '0'. Expected a whole number from 1 to 65535/],
  ['port', '22x', /Invalid port/],
  ['health-interval', '-1', /Invalid health-interval/],
  ['health-timeout', 'soon', /Invalid health-timeout 'soon'/],
  ['health-path', 'health', /Invalid health-path 'health'. Expected a URL path starting with \//],
  ['health-path', '/a b', /Invalid health-path/],
  ['create-release', 'yes', /Invalid create-release 'yes'. Expected true or false/],
  ['app-name', 'Shop', /Invalid app-name 'Shop'/],
  ['app-name', '-x', /Invalid app-name/],
  ['green-port', '8081', /'blue-port' and 'green-port' must differ/],
  ['version', '-rf', /Invalid version '-rf'/],
  ['rollback', 'latest version', /Invalid rollback/],
  [
    'version-pattern',
    '(',
    /Invalid version-pattern '\('. Expected a JavaScript regular expression/
  ],
  ['build-args', 'not a pair', /Invalid build-args/],
  ['docker-run-args', "--label 'open", /Invalid docker-run-args.*unterminated/],
  ['env-file', 'relative.env', /Invalid env-file/],
  ['nginx-upstream-file', 'up.conf', /Invalid nginx-upstream-file/],
  ['nginx-reload-command', 'nginx -s reload\nrm -rf /', /Invalid nginx-reload-command/],
  ['host', '-oProxyCommand=x', /Invalid host/],
  ['username', '-l', /Invalid username/],
  ['host-fingerprint', 'MD5:aa:bb', /MD5 fingerprints are not accepted/],
  ['host-fingerprint', 'SHA256:short', /Invalid host-fingerprint line 1/],
  ['known-hosts', 'garbage', /Invalid known-hosts line 1/],
  ['registry-username', 'bot\0\nx', /Invalid registry-username/],
  ['switch-mode', 'iptables', /Invalid switch-mode 'iptables'. Expected reload .* or dnat/],
  ['live-port', '99999', /Invalid live-port/]
] as const)('%s=%j fails: %s', (name, value, message) => {
  const p = problems({ ...base, [name]: value })
  expect(p).toHaveLength(1)
  expect(p[0]).toMatch(message)
})

test('switch-mode dnat: live-port defaults to 8083, must differ from the colors, and excludes network', () => {
  const c = parseConfig({ ...base, 'switch-mode': 'dnat' }, ctx)
  expect(c.switch).toEqual({ mode: 'dnat', livePort: 8083 })
  expect(parseConfig({ ...base, 'switch-mode': 'dnat', 'live-port': '9000' }, ctx).switch).toEqual({
    mode: 'dnat',
    livePort: 9000
  })
  expect(problems({ ...base, 'switch-mode': 'dnat', 'live-port': '8082' })).toEqual([
    "Input 'live-port' (8082) must differ from blue-port and green-port: it is the stable port nginx uses in switch-mode dnat."
  ])
  expect(problems({ ...base, 'switch-mode': 'dnat', network: 'web' })[0]).toMatch(
    /'switch-mode: dnat' and 'network' do not go together.*Use switch-mode reload with network/
  )
  // in reload mode the live port is not used, so it may equal a color's port
  expect(problems({ ...base, 'live-port': '8082' })).toEqual([])
})

test('secrets are never quoted in messages', () => {
  const p = problems({ ...base, 'ssh-key': 'hunter2-not-a-key', env: 'GOOD=1\nbad key=TOPSECRET' })
  expect(p.join('\n')).toMatch(/Invalid ssh-key\. Expected the text of a private key/)
  expect(p.join('\n')).toMatch(/Invalid env line 2: expected KEY=VALUE/)
  expect(p.join('\n')).not.toMatch(/hunter2|TOPSECRET|bad key/)
})

test('no message quotes a cut-off value: build-args and docker-run-args are not quoted at all', () => {
  const secret = 'S3cr3t'.repeat(60)
  const p = problems({
    ...base,
    'build-args': `TOKEN=${secret}\nnot an arg`,
    'docker-run-args': `--env X=${secret} 'unterminated`,
    'health-path': `no-slash-${'y'.repeat(300)}`
  })
  expect(p.join('\n')).toMatch(/Invalid build-args\. Expected/)
  expect(p.join('\n')).toMatch(/Invalid docker-run-args\. Expected/)
  expect(p.join('\n')).not.toContain('S3cr3t')
  // other inputs are quoted whole, never cut
  expect(p.join('\n')).toContain(`'no-slash-${'y'.repeat(300)}'`)
})

test.each([
  [
    'A=1\nexport B=two words\n# c\n\n  C = x=y ',
    [
      ['A', '1'],
      ['B', 'two words'],
      ['C', ' x=y ']
    ]
  ],
  ["S='it''s'", undefined],
  ["S='lit \\n $X'  # comment", [['S', 'lit \\n $X']]],
  ['D="a\\nb\\t\\"q\\" \\\\ \\x"', [['D', 'a\nb\t"q" \\ \\x']]],
  [
    'K="-----BEGIN KEY-----\r\nabc\r\n-----END KEY-----"\r\nN=1',
    [
      ['K', '-----BEGIN KEY-----\nabc\n-----END KEY-----'],
      ['N', '1']
    ]
  ],
  [
    'E=\nF=""',
    [
      ['E', ''],
      ['F', '']
    ]
  ]
])('env in dotenv form: %j', (env, expected) => {
  if (expected) expect(parseConfig({ ...base, env }, ctx).app.env).toEqual(expected)
  else expect(problems({ ...base, env })[0]).toMatch(/^Invalid env line 1: a single-quoted value/)
})

test.each([
  ['KEY="never closed\nSECRET_LINE', 2, 1],
  ['A=1\n-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\nB=2', 4, 2],
  ['A=1\nB="x" trailing', 2, 2]
])('a malformed env line is named by its number only: %j', (env, _lines, line) => {
  const p = problems({ ...base, env }).join('\n')
  expect(p).toMatch(new RegExp(`Invalid env line ${line}: `))
  expect(p).not.toMatch(/never closed|SECRET_LINE|BEGIN|MIIEpAIBAAKCAQEA|trailing/)
})

test('a value that spans lines cannot go to a variable the docker CLI reads', () => {
  expect(problems({ ...base, env: 'DOCKER_HOST="a\nb"' })[0]).toMatch(
    /spans lines .* cannot be given to DOCKER_HOST/
  )
  expect(problems({ ...base, env: 'DOCKER_HOST=unix:///x\nPEM="a\nb"' })).toEqual([])
})

test('a PKCS#8 key is refused with the command that converts it', () => {
  expect(
    problems({ ...base, 'ssh-key': '-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----' })[0]
  ).toMatch(/PKCS#8.*ssh-keygen -p -f/)
})

test('missing required inputs and an unpinned host key are all reported at once', () => {
  const p = problems({})
  expect(p).toEqual([
    expect.stringMatching(/^Input 'image' is required/),
    expect.stringMatching(/^Input 'username' is required/),
    expect.stringMatching(/^Input 'ssh-key' is required/),
    expect.stringMatching(/^Input 'host' is required/),
    expect.stringMatching(
      /host key is not pinned.*ssh-keygen -lf \/etc\/ssh\/ssh_host_ed25519_key.pub.*insecure-ignore-host-key/
    )
  ])
})

test('insecure-ignore-host-key replaces the pin', () => {
  const { 'host-fingerprint': _, ...rest } = base
  expect(
    parseConfig({ ...rest, 'insecure-ignore-host-key': 'true' }, ctx).ssh.insecureIgnoreHostKey
  ).toBe(true)
})

test('registry credentials go together', () => {
  expect(problems({ ...base, 'registry-username': 'bot' })[0]).toMatch(
    /'registry-username' and 'registry-password' go together: give both to log in to ghcr\.io, or neither/
  )
  expect(problems({ ...base, 'pull-registry-password': 'x' })).toEqual([
    "Inputs 'pull-registry-username' and 'pull-registry-password' go together: give both for the server's pull from ghcr.io, or neither."
  ])
})

test('the servers pull with the pull credential, anonymously without one, and with the push one only when told by name', () => {
  const push = { 'registry-username': 'pusher', 'registry-password': 'p1' }
  expect(parseConfig({ ...base, ...push }, ctx).pull).toEqual({ source: 'none' })
  expect(
    parseConfig(
      { ...base, ...push, 'pull-registry-username': 'puller', 'pull-registry-password': 'p2' },
      ctx
    ).pull
  ).toEqual({ username: 'puller', password: 'p2', source: 'pull' })
  expect(parseConfig({ ...base, ...push, 'push-credential-to-servers': 'true' }, ctx).pull).toEqual(
    { username: 'pusher', password: 'p1', source: 'push' }
  )
  expect(() => parseConfig({ ...base, 'push-credential-to-servers': 'true' }, ctx)).toThrow(
    /'push-credential-to-servers' is true, but there is no push credential/
  )
  expect(() =>
    parseConfig(
      {
        ...base,
        ...push,
        'push-credential-to-servers': 'true',
        'pull-registry-username': 'puller',
        'pull-registry-password': 'p2'
      },
      ctx
    )
  ).toThrow(/'push-credential-to-servers' and 'pull-registry-username' do not go together/)
})

test('engine swarm refuses env names the docker CLI reads itself (its values reach it through its environment)', () => {
  expect(() =>
    parseConfig({ ...base, engine: 'swarm', env: 'PATH=/opt\nDOCKER_HOST=tcp://x\nOK=1' }, ctx)
  ).toThrow(/with engine swarm.*PATH, DOCKER_HOST \(a variable the docker CLI or bash read\)/)
  expect(parseConfig({ ...base, engine: 'swarm', env: 'OK=1' }, ctx).app.env).toEqual([['OK', '1']])
})

test.each([
  ['shop', 'docker.io'],
  ['acme/shop', 'docker.io'],
  ['ghcr.io/acme/shop', 'ghcr.io'],
  ['localhost/shop', 'localhost'],
  ['127.0.0.1:5000/shop', '127.0.0.1:5000']
])('registryOf(%s) = %s', (image, registry) => {
  expect(registryOf(image)).toBe(registry)
})

describe('config file', () => {
  test('inputs given to the step win over the file; lists and maps become lines', () => {
    const file = parseConfigFile(
      'image: ghcr.io/acme/from-file\nport: 2200\nhealth-path: /healthz\nbuild-args:\n  A: 1\n  B: two\ndocker-run-args: --memory 1g\ncreate-release: false\n',
      'deploy.yml'
    )
    expect(file).toEqual({
      image: 'ghcr.io/acme/from-file',
      port: '2200',
      'health-path': '/healthz',
      'build-args': 'A=1\nB=two',
      'docker-run-args': '--memory 1g',
      'create-release': 'false'
    })
    const c = parseConfig(mergeInputs(file, { ...base }), ctx)
    expect(c.image).toBe('ghcr.io/acme/shop')
    expect(c.ssh.port).toBe(2200)
    expect(c.health.path).toBe('/healthz')
    expect(c.createRelease).toBe(false)
  })

  test('a YAML syntax error gives line and column', () => {
    expect(() => parseConfigFile('image: a\nport: [1,\n', 'deploy.yml')).toThrow(
      /^config file deploy.yml:\d+:\d+: /
    )
  })

  test('unknown keys and secrets in the file are refused with their line', () => {
    expect(() => parseConfigFile('image: a\nimgae: b\nssh-key: x\n', 'd.yml')).toThrow(
      expect.objectContaining({
        problems: [
          "config file d.yml:2:1: unknown input 'imgae'. Expected one of the inputs in action.yml.",
          expect.stringMatching(
            /^config file d.yml:3:1: 'ssh-key' is a secret and must not be committed/
          )
        ]
      })
    )
  })

  test('loadConfig reads the file relative to the workspace', () => {
    const ws = mkdtempSync(path.join(tmpdir(), 'bgd-'))
    writeFileSync(path.join(ws, 'deploy.yml'), 'app-name: shop\nblue-port: 9001\n')
    const c = loadConfig({ ...base, config: 'deploy.yml' }, { ...ctx, workspace: ws })
    expect(c.app.name).toBe('shop')
    expect(c.app.bluePort).toBe(9001)
    expect(() => loadConfig({ ...base, config: 'nope.yml' }, { ...ctx, workspace: ws })).toThrow(
      /Input 'config': cannot read 'nope.yml' \(ENOENT\)/
    )
  })
})

describe('build: false', () => {
  const D = `sha256:${'a'.repeat(64)}`
  test.each([
    [`ghcr.io/acme/shop@${D}`, `@${D}`],
    ['ghcr.io/acme/shop:sha-1a2b3c4', ':sha-1a2b3c4'],
    [`localhost:5000/team/app:v1.2.3@${D}`, `:v1.2.3@${D}`]
  ])('image %s is taken as pushed before', (image, prebuilt) => {
    const c = testConfig({ build: 'false', image })
    expect(c.image).toBe(image.slice(0, image.length - prebuilt.length))
    expect(c.prebuilt).toBe(prebuilt)
  })

  test.each([
    ['ghcr.io/acme/shop', /with build: false, the image pushed already with its tag or digest/],
    ['ghcr.io/acme/shop@sha256:12', /a digest \(@sha256: and 64 hex digits\)/]
  ])('image %s is refused, saying what to give', (image, message) => {
    expect(() => testConfig({ build: 'false', image })).toThrow(message)
  })

  test('build: true (the default) with a digest says how to deploy it', () => {
    expect(() => testConfig({ image: `ghcr.io/acme/shop@${D}` })).toThrow(/set build: false/)
    expect(testConfig({}).prebuilt).toBeUndefined()
  })
})

describe('a real application: the pre-switch task, workers, the run spec a rollback sets itself', () => {
  test('workers: name, options, a command split like a shell would', () => {
    const c = testConfig({
      workers: [
        '# the job runner and the scheduler',
        "jobs: bin/jobs --queue 'high prio'",
        '',
        'scheduler single stop-signal=SIGINT stop-timeout=120: bin/cron'
      ].join('\n')
    })
    expect(c.app.workers).toEqual([
      {
        name: 'jobs',
        words: ['bin/jobs', '--queue', 'high prio'],
        single: false,
        stopSignal: 'SIGTERM',
        stopTimeout: 30
      },
      {
        name: 'scheduler',
        words: ['bin/cron'],
        single: true,
        stopSignal: 'SIGINT',
        stopTimeout: 120
      }
    ])
    expect(c.app.given).toEqual(['workers'])
  })
  test.each([
    ['Jobs: x', /Invalid workers line 1: expected NAME/],
    ['jobs x: bin/jobs', /Invalid workers line 1 \(jobs\): 'x' is not an option/],
    ['jobs stop-timeout=9999: bin/jobs', /'stop-timeout=9999' is not an option/],
    ['jobs:', /no command after the colon/],
    ['jobs: a\njobs: b', /the name jobs is given twice/],
    ["jobs: 'open", /not quoted like a shell would/]
  ])('bad workers %j', (workers, message) => {
    expect(problems({ ...base, workers }).join('\n')).toMatch(message)
  })
  test('pre-switch-command: words, timeout, force; command-timeout leaves room for it', () => {
    const c = testConfig({
      'pre-switch-command': "bin/migrate --to 'v 2'",
      'pre-switch-timeout': '600'
    })
    expect(c.app.task).toEqual({
      words: ['bin/migrate', '--to', 'v 2'],
      timeout: 600,
      force: false
    })
    expect(c.commandTimeout).toBeGreaterThanOrEqual(600 + 60 + 30)
    expect(testConfig({}).app.task).toBeUndefined()
    expect(problems({ ...base, 'pre-switch-command': "x 'open" }).join('\n')).toMatch(
      /Invalid pre-switch-command/
    )
  })
  test('engine swarm takes a pre-switch command (a one-off job) and workers (a service each)', () => {
    const p = problems({
      ...base,
      engine: 'swarm',
      'pre-switch-command': 'bin/migrate',
      workers: 'jobs: bin/jobs'
    }).join('\n')
    expect(p).not.toMatch(/pre-switch-command/)
    expect(p).toBe('')
  })
  test('given: the run spec items the inputs set, and only those', () => {
    expect(testConfig({}).app.given).toEqual([])
    expect(
      testConfig({ 'health-path': '/up', env: 'A=1', 'docker-run-args': '--memory 1g' }).app.given
    ).toEqual(['health_path', 'env', 'run_arg'])
  })
})
