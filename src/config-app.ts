// The inputs of the app on the server, its health check and switch, and the run itself: each group
// checked into its part of the Config, every problem reported to the one collector.
import { noControl, type Collector } from './config-check.js'
import type { Config, ConfigContext } from './config-types.js'
import { checkTask, checkWorkers } from './config-workers.js'
import {
  defaultOf,
  ENGINES,
  SWITCH_MODES,
  type Engine,
  type InputName,
  type SwitchMode
} from './config-inputs.js'
import type { RunSpecItem } from './remote/protocol.js'
import { parseDotenv } from './dotenv.js'
import { versionProblem } from './version.js'
import { splitWords } from './words.js'
import { ComposeError, readCompose, type ComposeApp } from './compose.js'

/** The input behind each item of a version's run spec (src/remote/protocol.ts RUN_SPEC). */
export const RUN_SPEC_INPUTS: Record<RunSpecItem, InputName> = {
  container_port: 'container-port',
  command: 'compose-file',
  health_path: 'health-path',
  health_cmd: 'health-cmd',
  network: 'network',
  env_file: 'env-file',
  task: 'pre-switch-command',
  workers: 'workers',
  env: 'env',
  run_arg: 'docker-run-args'
}

const NAME = /^[a-z0-9][a-z0-9_.-]{0,62}$/
const NETWORK = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$/
const UPSTREAM_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/
/**
 * Variables that bash and the docker CLI on the server read themselves: a value that spans lines
 * reaches `docker run` through the CLI's environment, where these would change the CLI.
 */
export const CLI_VARIABLES =
  /^(PATH|HOME|IFS|ENV|TMPDIR|SHELLOPTS|BASHOPTS|BASH_.*|LD_.*|DOCKER_.*|(HTTPS?|NO|ALL)_PROXY)$/i

/** The app: its name, ports, network, environment and extra docker run arguments. */
export function checkApp(c: Collector, ctx: ConfigContext): Config['app'] {
  const repoName = (ctx.repository.split('/')[1] ?? '')
    .toLowerCase()
    .replace(/[^a-z0-9_.-]/g, '-')
    .replace(/^[^a-z0-9]+/, '')
  const appRaw = c.get('app-name')?.trim()
  let appName = appRaw ?? repoName
  if (!NAME.test(appName)) {
    if (appRaw === undefined)
      c.missing(
        'app-name',
        `the repository name '${repoName}' cannot be used as one; give app-name, e.g. shop`
      )
    else
      c.bad(
        'app-name',
        'a lowercase name of up to 63 letters, digits, _ . and -, starting with a letter or digit'
      )
    appName = 'app'
  }
  const containerPort = c.port('container-port')
  const bluePort = c.port('blue-port')
  const greenPort = c.port('green-port')
  if (bluePort === greenPort)
    c.add(`Inputs 'blue-port' and 'green-port' must differ (both are ${bluePort}).`)
  const network =
    c.text(
      'network',
      '',
      (v) => NETWORK.test(v),
      'a Docker network name of letters, digits, _ . and -'
    ) || undefined
  const dotenv = parseDotenv(c.get('env') ?? '')
  for (const p of dotenv.problems)
    c.add(`Invalid env line ${p.line}: ${p.why}. (No part of it is shown: env is secret.)`)
  const env = dotenv.entries
  const spanningLines = env.filter(([k, v]) => /[\r\n]/.test(v) && CLI_VARIABLES.test(k))
  if (spanningLines.length > 0)
    c.add(
      `Invalid env: a value that spans lines reaches docker through its environment on the server, so it cannot be given to ${spanningLines.map(([k]) => k).join(', ')} (a variable the docker CLI or bash read). Use another name, or a value on one line.`
    )
  const envFile =
    c.text(
      'env-file',
      '',
      (v) => v.startsWith('/') && noControl(v),
      'an absolute path on the server'
    ) || undefined
  let dockerRunArgs: string[] = []
  const runArgsRaw = c.get('docker-run-args')
  if (runArgsRaw !== undefined) {
    if (runArgsRaw.includes('\0')) c.bad('docker-run-args', 'arguments without NUL characters')
    else
      try {
        dockerRunArgs = splitWords(runArgsRaw)
      } catch (e) {
        c.bad('docker-run-args', `arguments quoted like a shell would (${(e as Error).message})`)
      }
  }
  const workers = checkWorkers(c)
  let command: string[] | undefined
  let composeHealthCmd: string | undefined
  let accessories: ComposeApp['accessories'] = []
  let port = containerPort
  const composeFile = c.get('compose-file')?.trim()
  if (composeFile) {
    try {
      const compose = readCompose(
        ctx.workspace,
        composeFile,
        c.get('compose-service')?.trim() || undefined,
        ctx.env ?? process.env,
        appName,
        c.get('engine')?.trim() === 'swarm' ? 'swarm' : 'ssh'
      )
      // the inputs win over the file: env by key, run arguments after the file's
      if (compose.containerPort !== undefined) {
        if (c.get('container-port') !== undefined && compose.containerPort !== containerPort)
          c.add(
            `Input 'container-port' is ${containerPort}, but ${composeFile} publishes ${compose.containerPort} for ${compose.service}: remove one of them.`
          )
        else port = compose.containerPort
      }
      env.unshift(...compose.env.filter(([k]) => !env.some(([o]) => o === k)))
      dockerRunArgs = [...compose.runArgs, ...dockerRunArgs]
      command = compose.command
      composeHealthCmd = compose.healthCmd
      accessories = compose.accessories
      for (const w of compose.workers)
        if (workers.some((o) => o.name === w.name))
          c.add(`Invalid workers: ${w.name} is in ${composeFile} too; give it once.`)
        else workers.push(w)
    } catch (e) {
      if (!(e instanceof ComposeError)) throw e
      for (const p of e.problems) c.add(p)
    }
  } else if (c.get('compose-service') !== undefined)
    c.add("Input 'compose-service' names a service of compose-file: set compose-file too.")
  if (command && /[\0]/.test(command.join('')))
    c.add(`Invalid ${composeFile}: a command word holds a NUL character.`)
  return {
    name: appName,
    containerPort: port,
    bluePort,
    greenPort,
    network,
    env,
    envFile,
    dockerRunArgs,
    command,
    composeHealthCmd,
    accessories,
    task: checkTask(c),
    workers,
    given: (Object.keys(RUN_SPEC_INPUTS) as RunSpecItem[]).filter(
      (item) => c.get(RUN_SPEC_INPUTS[item]) !== undefined
    )
  }
}

/** Health check, drain, nginx and the switch mode. */
export function checkSwitch(
  c: Collector,
  app: Config['app']
): Pick<Config, 'health' | 'drainTimeout' | 'nginx' | 'switch'> {
  const { name: appName, bluePort, greenPort, network } = app
  const healthPath = c.text(
    'health-path',
    defaultOf('health-path'),
    (v) => v.startsWith('/') && !/[\s\0-\x1f\x7f]/.test(v),
    'a URL path starting with / and without spaces'
  )
  const healthTimeout = c.num('health-timeout', 1, 3600, false)
  const healthInterval = c.num('health-interval', 0.05, 60, false)
  const drainTimeout = c.num('drain-timeout', 0, 3600, false)
  const upstreamFile = c.text(
    'nginx-upstream-file',
    `/etc/nginx/conf.d/${appName}-upstream.conf`,
    (v) => v.startsWith('/') && !v.endsWith('/') && noControl(v),
    'an absolute file path on the server'
  )
  const upstreamName = c.text(
    'nginx-upstream-name',
    appName,
    (v) => UPSTREAM_NAME.test(v),
    'an nginx upstream name of letters, digits, _ . and -'
  )
  const testCommand = c.text(
    'nginx-test-command',
    defaultOf('nginx-test-command'),
    noControl,
    'a one-line command'
  )
  const reloadCommand = c.text(
    'nginx-reload-command',
    defaultOf('nginx-reload-command'),
    noControl,
    'a one-line command'
  )

  const switchModeRaw = c.get('switch-mode')?.trim()
  let switchMode = defaultOf('switch-mode') as SwitchMode
  if (switchModeRaw !== undefined) {
    if ((SWITCH_MODES as readonly string[]).includes(switchModeRaw))
      switchMode = switchModeRaw as SwitchMode
    else
      c.bad(
        'switch-mode',
        'reload (nginx is reloaded at each switch) or dnat (nginx points at live-port and a NAT rule on the server picks the color; needs root or sudo there)'
      )
  }
  const livePort = c.port('live-port')
  if (switchMode === 'dnat') {
    if (livePort === bluePort || livePort === greenPort)
      c.add(
        `Input 'live-port' (${livePort}) must differ from blue-port and green-port: it is the stable port nginx uses in switch-mode dnat.`
      )
    if (network)
      c.add(
        "Inputs 'switch-mode: dnat' and 'network' do not go together: dnat redirects loopback traffic of the server's own nginx, while with 'network' nginx reaches the containers by name. Use switch-mode reload with network."
      )
  }

  return {
    health: { path: healthPath, timeout: healthTimeout, interval: healthInterval },
    drainTimeout,
    nginx: { upstreamFile, upstreamName, testCommand, reloadCommand },
    switch: { mode: switchMode, livePort }
  }
}

/** A rollback instead of a deploy. */
export function checkRun(c: Collector): Pick<Config, 'rollback' | 'report'> {
  const rollback =
    c.text(
      'rollback',
      '',
      (v) => v === 'previous' || !versionProblem(v),
      "empty, 'previous', or a version such as v1.3.2"
    ) || undefined
  const httpUrl = (v: string) => {
    try {
      return /^https?:$/.test(new URL(v).protocol) && !/\s/.test(v)
    } catch {
      return false
    }
  }
  const url =
    c.text('url', '', httpUrl, "the app's address, such as https://shop.example.com") || undefined
  const environment =
    c.text(
      'deployment-environment',
      '',
      (v) => v.length <= 255 && !/[\0-\x1f\x7f]/.test(v),
      "a GitHub environment's name, such as production"
    ) || undefined
  const notifyUrl =
    c.text(
      'notify-url',
      '',
      httpUrl,
      'an incoming webhook URL, such as https://hooks.slack.com/services/…'
    ) || undefined
  return { rollback, report: { url, environment, notifyUrl } }
}

/** After the switch: the watch window and the warm standby. */
export function checkAfterSwitch(c: Collector): Config['after'] {
  const rate = c.get('watch-max-error-rate')?.trim().replace(/ ?%$/, '')
  let maxErrorRate = Number(defaultOf('watch-max-error-rate'))
  if (rate !== undefined) {
    if (/^\d+(\.\d+)?$/.test(rate) && Number(rate) <= 100) maxErrorRate = Number(rate)
    else c.bad('watch-max-error-rate', 'a percentage from 0 to 100, such as 1 or 0.5%')
  }
  const watch = c.num('watch', 0, 3600, true)
  const healthOnly = c.bool('watch-health-only')
  return {
    watch,
    maxErrorRate,
    maxHealthFailures: c.num('watch-max-health-failures', 1, 1000, true),
    healthOnly,
    keepWarm: c.num('keep-warm', 0, 86400, true),
    canary: checkCanary(c, watch, healthOnly)
  }
}

/**
 * canary: percentages of clients, rising, each step judged as the watch judges (so watch is
 * needed, and nginx's answers: not with watch-health-only); the full switch and the watch follow.
 */
function checkCanary(c: Collector, watch: number, healthOnly: boolean): Config['after']['canary'] {
  const raw = c.get('canary')?.trim() ?? ''
  const stepTime = c.num('canary-step-time', 1, 3600, true)
  const key = c.text(
    'canary-key',
    defaultOf('canary-key'),
    (v) => /^(\$[A-Za-z_][A-Za-z0-9_]*|[A-Za-z0-9_.:-])+$/.test(v),
    'nginx variables (and plain characters) that tell one client from another, such as $remote_addr or $cookie_session'
  )
  if (raw === '') return { steps: [], stepTime, key }
  const words = raw.split(/[\s,]+/).filter(Boolean)
  const steps = words.map((w) => (/^\d+ ?%?$/.test(w) ? parseInt(w, 10) : NaN))
  if (
    steps.some((n) => !(n >= 1 && n <= 99)) ||
    steps.some((n, i) => i > 0 && n <= steps[i - 1]!) ||
    steps.length > 10
  ) {
    c.bad('canary', 'up to 10 rising percentages of clients from 1 to 99, such as 10,50')
    return { steps: [], stepTime, key }
  }
  if (watch === 0)
    c.add(
      "Input 'canary' needs watch: each step is judged as the watch judges (the new version's 5xx against the old one's in the same seconds), and after the last step come the full switch and the watch. Set watch, such as watch: 60."
    )
  else if (healthOnly)
    c.add(
      "Input 'canary' compares nginx's answers of the two versions, which watch-health-only says are not read: remove one of them."
    )
  return { steps, stepTime, key }
}

/** engine: ssh (blue-green over SSH) or swarm (a Docker Swarm service on a manager). */
export function checkEngine(
  c: Collector,
  s: {
    several: boolean
    mode: SwitchMode
    runArgs: string[]
    maxParallel: number
    keepWarm: number
    canary: boolean
    compose: boolean
    envKeys: string[]
  }
): Config['engine'] {
  const raw = c.get('engine')?.trim() ?? defaultOf('engine')
  const kind = (ENGINES as readonly string[]).includes(raw) ? (raw as Engine) : undefined
  if (!kind) c.bad('engine', 'ssh or swarm')
  const replicas = c.num('replicas', 1, 1000, true)
  const healthCmd =
    c.text('health-cmd', '', noControl, 'a one-line command run inside the container') || undefined
  if (kind === 'swarm') {
    if (s.several)
      c.add(
        "engine swarm deploys through one manager, in one go: give it in 'host', without 'hosts', 'lb-host', previews or promote: false."
      )
    if (s.keepWarm > 0)
      c.add(
        "Input 'keep-warm' does not apply to a Swarm service (Swarm keeps the previous spec): remove it."
      )
    if (s.mode === 'dnat')
      c.add('engine swarm does not use switch-mode: Swarm replaces the tasks. Remove switch-mode.')
    if (s.compose && c.get('replicas') !== undefined && s.runArgs.includes('--replicas'))
      c.add(
        "Input 'replicas' and compose-file's deploy.replicas both say how many tasks the service runs: remove one of them."
      )
    if (s.canary)
      c.add(
        "Input 'canary' does not apply to a Swarm service: Swarm replaces the tasks in place, with no nginx of bg-deploy's to split clients. Remove canary."
      )
    if (c.get('docker-run-args') !== undefined)
      c.add(
        "Input 'docker-run-args' does not apply to a Swarm service: remove it with engine swarm."
      )
    const cli = s.envKeys.filter((k) => CLI_VARIABLES.test(k))
    if (cli.length > 0)
      c.add(
        `Invalid env with engine swarm: the values reach 'docker service update' through the docker CLI's own environment (never its command line), so ${cli.join(', ')} (a variable the docker CLI or bash read) cannot be given there. Use another name, or put it in env-file on the server.`
      )
  }
  return {
    kind: kind ?? 'ssh',
    replicas,
    healthCmd,
    parallelism: s.maxParallel > 0 ? s.maxParallel : 1
  }
}
