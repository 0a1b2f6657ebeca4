import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { durationSeconds, interpolate, readCompose } from '../src/compose.js'
import { parseConfig } from '../src/config.js'

function workspace(files: Record<string, string>): string {
  const ws = mkdtempSync(path.join(tmpdir(), 'bgd-compose-'))
  for (const [f, text] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(ws, f)), { recursive: true })
    writeFileSync(path.join(ws, f), text)
  }
  return ws
}

const TYPICAL = `
services:
  web:
    build: .
    ports: ["8000:3000"]
    environment:
      DATABASE_URL: postgres://app:\${DB_PASSWORD}@db/app
      MODE: \${MODE:-production}
      PRICE: "$$5"
    env_file: [deploy/app.env]
    command: bin/server --port 3000
    volumes:
      - uploads:/app/uploads
      - /srv/shared:/shared:ro
    healthcheck:
      test: ["CMD", "wget", "-q", "-O-", "http://localhost:3000/up"]
      interval: 2s
      timeout: 1s
      retries: 5
    networks: [backend]
    extra_hosts: ["api.internal:10.0.0.5"]
    user: "1000"
    working_dir: /app
    labels: { team: shop }
    stop_signal: SIGINT
    stop_grace_period: 1m30s
    ulimits: { nofile: { soft: 1024, hard: 2048 } }
    cap_drop: [ALL]
    tmpfs: /tmp
    read_only: true
    shm_size: 64m
    logging: { driver: json-file, options: { max-size: 10m } }
    deploy: { resources: { limits: { cpus: "0.5", memory: 256M } } }
    restart: unless-stopped
  jobs:
    build: .
    command: ["bin/jobs", "--queue", "default"]
    stop_grace_period: 45s
volumes:
  uploads: {}
networks:
  backend: { external: true }
`

test('a typical compose file: the web service becomes the run spec, a service of the same build is a worker, ${VAR} comes from the runner', () => {
  const ws = workspace({
    'docker-compose.yml': TYPICAL,
    'deploy/app.env': 'SECRET_KEY=abc\nMODE=dev\n'
  })
  const app = readCompose(ws, 'docker-compose.yml', undefined, { DB_PASSWORD: 's3cret' }, 'shop')
  expect(app.service).toBe('web')
  expect(app.containerPort).toBe(3000)
  // env_file first, environment over it
  expect(app.env).toEqual([
    ['SECRET_KEY', 'abc'],
    ['DATABASE_URL', 'postgres://app:s3cret@db/app'],
    ['MODE', 'production'],
    ['PRICE', '$5']
  ])
  expect(app.command).toEqual(['bin/server', '--port', '3000'])
  expect(app.healthCmd).toBe('wget -q -O- http://localhost:3000/up')
  expect(app.runArgs).toEqual([
    '-v',
    'shop_uploads:/app/uploads',
    '-v',
    '/srv/shared:/shared:ro',
    '--network',
    'backend',
    '--add-host',
    'api.internal:10.0.0.5',
    '--user',
    '1000',
    '--workdir',
    '/app',
    '--shm-size',
    '64m',
    '--stop-signal',
    'SIGINT',
    '--label',
    'team=shop',
    '--stop-timeout',
    '90',
    '--ulimit',
    'nofile=1024:2048',
    '--cap-drop',
    'ALL',
    '--tmpfs',
    '/tmp',
    '--read-only',
    '--log-driver',
    'json-file',
    '--log-opt',
    'max-size=10m',
    '--cpus',
    '0.5',
    '--memory',
    '256M',
    '--health-interval',
    '2000ms',
    '--health-timeout',
    '1000ms',
    '--health-retries',
    '5'
  ])
  expect(app.workers).toEqual([
    {
      name: 'jobs',
      words: ['bin/jobs', '--queue', 'default'],
      single: false,
      stopSignal: 'SIGTERM',
      stopTimeout: 45
    }
  ])
})

test('what bg-deploy does not carry over is refused by name, with what to do; nothing is dropped', () => {
  const ws = workspace({
    'c.yml': `
services:
  web:
    build: .
    ports: ["80:8080"]
    container_name: shop
    privileged: true
    volumes: ["./data:/data"]
    networks: [inner]
    restart: "no"
    deploy: { replicas: 3 }
    environment: { A: "\${MISSING}", B: "\${REQUIRED:?set it}" }
  db:
    image: postgres:16
`
  })
  let problems: string[] = []
  try {
    readCompose(ws, 'c.yml', undefined, {}, 'shop')
  } catch (e) {
    problems = (e as { problems: string[] }).problems
  }
  const text = problems.join('\n')
  expect(text).toMatch(
    /services\.web\.container_name is not carried over by bg-deploy: bg-deploy names the containers itself/
  )
  expect(text).toMatch(/services\.web\.privileged is not carried over/)
  expect(text).toMatch(/\.\/data is a path relative to the compose file on your machine/)
  expect(text).toMatch(/networks: inner is not declared external: true/)
  expect(text).toMatch(/restart: no: bg-deploy restarts its containers unless stopped/)
  expect(text).toMatch(/deploy\.replicas is not carried over/)
  expect(text).toMatch(/\$\{MISSING\} names MISSING, which is not set in the runner's environment/)
  expect(text).toMatch(/REQUIRED is not set in the runner's environment: set it/)
  expect(problems.length).toBe(8)
})

test('a service of another image is an accessory: started once when missing, on the network it shares with the app (Compose default), by its service name', () => {
  const ws = workspace({
    'c.yml': `
services:
  web: { build: ., ports: ["8080"], environment: { DB: "postgres://db/app" } }
  db:
    image: postgres:16
    environment: { POSTGRES_PASSWORD: "\${DB_PASSWORD}" }
    volumes: [pg:/var/lib/postgresql/data]
    ports: ["127.0.0.1:5432:5432"]
    healthcheck: { test: ["CMD-SHELL", "pg_isready -U postgres"], interval: 1s }
  tool:
    build: ./tool
`
  })
  let problems: string[] = []
  try {
    readCompose(ws, 'c.yml', 'web', { DB_PASSWORD: 'pw' }, 'shop')
  } catch (e) {
    problems = (e as { problems: string[] }).problems
  }
  expect(problems).toEqual([
    expect.stringMatching(
      /services\.tool is built from another context than web: bg-deploy builds one image per run/
    )
  ])
  writeFileSync(
    path.join(ws, 'd.yml'),
    readFileSync(path.join(ws, 'c.yml'), 'utf8').replace(/ {2}tool:\n.*\n/s, '')
  )
  const app = readCompose(ws, 'd.yml', undefined, { DB_PASSWORD: 'pw' }, 'shop')
  expect(app.runArgs.slice(0, 2)).toEqual(['--network', 'shop_default'])
  expect(app.accessories).toEqual([
    {
      name: 'db',
      image: 'postgres:16',
      network: 'shop_default',
      args: [
        '--network',
        'shop_default',
        '--network-alias',
        'db',
        '-p',
        '127.0.0.1:5432:5432',
        '-v',
        'shop_pg:/var/lib/postgresql/data',
        '--health-interval',
        '1000ms',
        '--health-cmd',
        'pg_isready -U postgres'
      ],
      env: [['POSTGRES_PASSWORD', 'pw']],
      command: []
    }
  ])
})

test('which service is the web one: compose-service, else the one with ports, else the only one built', () => {
  const ws = workspace({
    'a.yml': 'services:\n  api: { build: ., expose: ["9000"] }\n',
    'b.yml': 'services:\n  one: { build: ./a }\n  two: { build: ./b }\n'
  })
  expect(readCompose(ws, 'a.yml', undefined, {}, 'x')).toMatchObject({
    service: 'api',
    containerPort: 9000
  })
  expect(() => readCompose(ws, 'b.yml', undefined, {}, 'x')).toThrow(
    /cannot tell which service is the web one \(services: one, two\): name it in compose-service/
  )
  expect(() => readCompose(ws, 'a.yml', 'web', {}, 'x')).toThrow(
    /has no service 'web' \(services: api\)/
  )
  expect(() => readCompose(ws, 'none.yml', undefined, {}, 'x')).toThrow(
    /Input 'compose-file': cannot read 'none.yml' \(ENOENT\)/
  )
})

test('interpolation and durations as Compose has them', () => {
  const p: string[] = []
  const env = { A: 'a', E: '' }
  expect(interpolate('$A ${A} ${E:-d} ${E-d} ${U-${A}} $$A', env, 'x', p)).toBe('a a d  a $A')
  expect(p).toEqual([])
  expect(durationSeconds('1m30s')).toBe(90)
  expect(durationSeconds('500ms')).toBe(0.5)
  expect(durationSeconds(10)).toBe(10)
  expect(durationSeconds('soon')).toBeUndefined()
})

test('compose-file in the config: the inputs win (env by key, run arguments after), the file gives the port, command, health command and workers', () => {
  const ws = workspace({ 'docker-compose.yml': TYPICAL, 'deploy/app.env': 'SECRET_KEY=abc\n' })
  const c = parseConfig(
    {
      image: 'r/shop',
      host: 'h',
      username: 'u',
      'ssh-key': '-----BEGIN OPENSSH PRIVATE KEY-----\nx\n-----END OPENSSH PRIVATE KEY-----',
      'insecure-ignore-host-key': 'true',
      'app-name': 'shop',
      'compose-file': 'docker-compose.yml',
      env: 'SECRET_KEY=from-input',
      'docker-run-args': '--memory 512M'
    },
    { repository: 'o/shop', workspace: ws, env: { DB_PASSWORD: 'pw' } }
  )
  expect(c.app.containerPort).toBe(3000)
  expect(c.app.env.find(([k]) => k === 'SECRET_KEY')).toEqual(['SECRET_KEY', 'from-input'])
  expect(c.app.dockerRunArgs.slice(-2)).toEqual(['--memory', '512M'])
  expect(c.app.command).toEqual(['bin/server', '--port', '3000'])
  expect(c.engine.healthCmd).toBe('wget -q -O- http://localhost:3000/up')
  expect(c.app.workers.map((w) => w.name)).toEqual(['jobs'])
  expect(c.app.given).toContain('command')
})

const SWARM_KEY = '-----BEGIN OPENSSH PRIVATE KEY-----\nx\n-----END OPENSSH PRIVATE KEY-----'
const swarmConfig = (ws: string, extra: Record<string, string> = {}) =>
  parseConfig(
    {
      image: 'r/shop',
      host: 'h',
      username: 'u',
      'ssh-key': SWARM_KEY,
      'insecure-ignore-host-key': 'true',
      'app-name': 'shop',
      engine: 'swarm',
      'compose-file': 'docker-compose.yml',
      ...extra
    },
    { repository: 'o/shop', workspace: ws, env: { DB_PASSWORD: 'pw' } }
  )

test("engine swarm: the file becomes the service's create arguments, deploy: keys included; every setting is given so an update resets what a later file drops", () => {
  const ws = workspace({
    'docker-compose.yml': `
services:
  web: &web
    build: .
    ports: ["8080"]
    environment: { DATABASE_URL: "postgres://app:\${DB_PASSWORD}@db/app" }
    command: ["bin/server", "--port", "8080"]
    volumes: ["uploads:/app/uploads", "/srv/shared:/shared:ro"]
    healthcheck: { test: "wget -q -O- localhost:8080/up", interval: 2s, retries: 4 }
    networks: [backend]
    user: "1000"
    labels: { team: shop }
    tmpfs: /tmp
    stop_grace_period: 20s
    deploy:
      replicas: 3
      update_config: { parallelism: 2, order: start-first, delay: 1s, monitor: 10s }
      rollback_config: { parallelism: 3 }
      resources: { limits: { cpus: "0.5", memory: 256M }, reservations: { memory: 64M } }
      restart_policy: { condition: on-failure, max_attempts: 3 }
      placement: { constraints: ["node.role == worker"], max_replicas_per_node: 2 }
  jobs:
    <<: *web
    command: bin/jobs
    stop_grace_period: 45s
networks:
  backend: { external: true, name: shop-net }
volumes:
  uploads: {}
`
  })
  const c = swarmConfig(ws, { 'compose-service': 'web' })
  const args = c.app.dockerRunArgs
  const pairsOf = (opt: string) => args.flatMap((a, i) => (a === opt ? [args[i + 1]] : []))
  expect(pairsOf('--mount')).toEqual([
    'type=volume,source=shop_uploads,target=/app/uploads',
    'type=bind,source=/srv/shared,target=/shared,readonly',
    'type=tmpfs,target=/tmp'
  ])
  expect(pairsOf('--network')).toEqual(['shop-net'])
  expect(pairsOf('--entrypoint')).toEqual([''])
  expect(args).toContain('--read-only=false')
  expect(pairsOf('--user')).toEqual(['1000'])
  expect(pairsOf('--container-label')).toEqual(['team=shop'])
  expect(pairsOf('--stop-grace-period')).toEqual(['20000ms'])
  expect(pairsOf('--health-interval')).toEqual(['2000ms'])
  expect(pairsOf('--health-retries')).toEqual(['4'])
  expect(pairsOf('--replicas')).toEqual(['3'])
  expect(pairsOf('--update-parallelism')).toEqual(['2'])
  expect(pairsOf('--update-order')).toEqual(['start-first'])
  expect(pairsOf('--update-delay')).toEqual(['1000ms'])
  expect(pairsOf('--update-monitor')).toEqual(['10000ms'])
  expect(pairsOf('--rollback-parallelism')).toEqual(['3'])
  expect(pairsOf('--limit-cpu')).toEqual(['0.5'])
  expect(pairsOf('--limit-memory')).toEqual(['256M'])
  expect(pairsOf('--reserve-memory')).toEqual(['64M'])
  expect(pairsOf('--restart-condition')).toEqual(['on-failure'])
  expect(pairsOf('--restart-max-attempts')).toEqual(['3'])
  expect(pairsOf('--constraint')).toEqual(['node.role == worker'])
  expect(pairsOf('--replicas-max-per-node')).toEqual(['2'])
  // no docker run flags: what only docker run takes is not there
  expect(args).not.toContain('-v')
  expect(args).not.toContain('--tmpfs')
  expect(c.app.command).toEqual(['bin/server', '--port', '8080'])
  expect(c.engine.healthCmd).toBe('wget -q -O- localhost:8080/up')
  expect(c.app.env).toEqual([['DATABASE_URL', 'postgres://app:pw@db/app']])
  expect(c.app.workers.map((w) => [w.name, w.words])).toEqual([['jobs', ['bin/jobs']]])
})

test('engine swarm: what Swarm cannot do, or what would leave a failed update in place, is refused by name', () => {
  const ws = workspace({
    'docker-compose.yml': `
services:
  web:
    build: .
    ports: ["8080"]
    shm_size: 64m
    deploy:
      mode: global
      update_config: { failure_action: pause }
      resources: { reservations: { devices: [{ capabilities: [gpu] }] } }
  db:
    image: postgres:16
`
  })
  let text = ''
  try {
    swarmConfig(ws, { replicas: '2' })
  } catch (e) {
    text = (e as Error).message
  }
  expect(text).toMatch(/services\.web\.shm_size does not apply with engine swarm/)
  expect(text).toMatch(/deploy\.mode: global: bg-deploy runs the web as a replicated service/)
  expect(text).toMatch(/update_config\.failure_action: pause: .*Swarm must roll back/)
  expect(text).toMatch(/resources\.reservations\.devices is not carried over/)
  expect(text).toMatch(
    /services\.db runs another image than web \(an accessory\): with engine swarm/
  )
  const two = workspace({
    'docker-compose.yml':
      'services:\n  web: { build: ., ports: ["8080"], deploy: { replicas: 3 } }\n'
  })
  expect(() => swarmConfig(two, { replicas: '2' })).toThrow(
    /Input 'replicas' and compose-file's deploy\.replicas both say/
  )
  expect(() => swarmConfig(two, { 'docker-run-args': '--memory 1g' })).toThrow(
    /docker-run-args' does not apply to a Swarm service/
  )
})

test("the Compose Specification's own schema checks the file first: a typo and a wrong type are named with their place", () => {
  const ws = workspace({
    'c.yml': 'services:\n  web:\n    build: .\n    enviroment: { A: b }\n    ports: 8080\n'
  })
  let problems: string[] = []
  try {
    readCompose(ws, 'c.yml', undefined, {}, 'shop')
  } catch (e) {
    problems = (e as { problems: string[] }).problems
  }
  expect(problems).toEqual([
    'c.yml does not follow the Compose Specification: services.web.enviroment is not a key of the Compose Specification (a typo?)',
    'c.yml does not follow the Compose Specification: services.web.ports must be array'
  ])
})
