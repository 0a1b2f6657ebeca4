// The vocabulary the action and the server script (src/remote/) share, declared once. The script's
// side is generated from it when the script is joined (scripts/join-remote.mjs writes the part
// `protocol.sh`: the parameter table, what each role reads of the secret lines, the result and
// serving fields, the exit codes, stages and commands), so a new parameter is one line here plus
// its use on each side. __tests__/protocol.test.ts holds what the script prints to it.

/**
 * What the script is asked to do (`action`): status reads, takes no lock and changes nothing;
 * task runs the pre-switch task alone (pulls the image, runs it once, records it), on the one
 * server a run over several names for it, before any server starts a color.
 */
export const ACTIONS = ['deploy', 'rollback', 'status', 'check', 'task'] as const
export type Action = (typeof ACTIONS)[number]

/** The script's parameters (`key=value` arguments) and the defaults its table gives them. */
export const PARAMETERS = {
  action: 'deploy',
  app: '',
  image: '',
  version: '',
  container_port: '8080',
  blue_port: '8081',
  green_port: '8082',
  network: '',
  env_file: '',
  health_path: '/',
  health_timeout: '60',
  health_interval: '0.05',
  drain_timeout: '30',
  upstream_file: '',
  upstream_name: '',
  nginx_test: 'nginx -t',
  nginx_reload: 'nginx -s reload',
  lock_timeout: '600',
  actor: '',
  run_url: '',
  registry: '',
  registry_user: '',
  state_dir: '',
  target: '',
  switch_mode: 'reload',
  live_port: '8083',
  docker_timeout: '60',
  role: 'single',
  color: '',
  bind_address: '127.0.0.1',
  lb_servers: '',
  preview_file: '',
  /** who may reach the previews: addresses and CIDR networks, space-separated (empty: everyone) */
  preview_allow: '',
  commit_timeout: '900',
  watch: '0',
  watch_max_error_rate: '1',
  watch_max_health_failures: '3',
  watch_health_only: 'false',
  /** canary steps: percentages of clients, comma-separated (empty: none) */
  canary: '',
  canary_step_time: '60',
  /** what tells one client from another for the canary's hash (nginx variables; sent with canary) */
  canary_key: '',
  keep_warm: '0',
  engine: 'ssh',
  replicas: '2',
  health_cmd: '',
  max_parallel: '1',
  build_wait: '0',
  /** the web's command (after the image): its words, NUL-separated, base64 (empty: the image's CMD) */
  command: '',
  /** the pre-switch task: its command's words, NUL-separated, base64 (empty: none) */
  task: '',
  task_timeout: '300',
  /** 1: run the task even when it succeeded for this version here before */
  task_force: '0',
  /**
   * the workers: base64 of one line each, NAME SINGLE(0|1) STOP_SIGNAL STOP_TIMEOUT WORDS, tab-
   * separated, WORDS the command's words NUL-separated, base64 (steps/workers.sh)
   */
  workers: '',
  /**
   * the single workers (steps/workers.sh): here (this server runs them: the only one, or the first
   * of several), elsewhere (another server does: stop any here), leave (a prepare for a later
   * promote: they stay as they are)
   */
  single_workers: 'here',
  /** rollback: the run spec items this run sets itself (RUN_SPEC, comma-separated) */
  explicit: ''
} as const
export type Parameter = keyof typeof PARAMETERS
/**
 * A run over several servers (src/remote/main.sh): each server's script runs in a role, reports
 * the stage it reached (`await` marker) and waits for the runner's next command on stdin.
 * single: one server switching itself in one go (no commands); host: a server with its own nginx;
 * app: a server behind the load-balancer host; lb: that load balancer.
 */
export const ROLES = ['single', 'host', 'app', 'lb'] as const
export type Role = (typeof ROLES)[number]

/**
 * The secret lines that follow the script on stdin, ending with `end`: the pull credential's
 * password, one `env KEY B64` per app variable, one `run_arg B64` per `docker run` argument (they
 * may embed a secret, so they never ride on the command line), in order.
 */
export const SECRET_LINES = ['registry_password', 'env', 'run_arg', 'accessory', 'end'] as const
export type SecretLine = Exclude<(typeof SECRET_LINES)[number], 'end'>

/**
 * What each role's steps read of the secret lines, and so all the runner sends it: a server that
 * runs containers (single, host, app) needs the pull credential, the env and the run arguments; the
 * load balancer runs none and gets nothing. `action=status` gets nothing either. The script
 * refuses a line its role does not read (src/remote/lib/params.sh).
 */
export const ROLE_SECRETS: Record<Role, readonly SecretLine[]> = {
  single: ['registry_password', 'env', 'run_arg', 'accessory'],
  host: ['registry_password', 'env', 'run_arg'],
  app: ['registry_password', 'env', 'run_arg'],
  lb: []
}

/**
 * A version's run spec: what its containers ran with, recorded on the server with its history
 * entry (steps/spec.sh), so that a rollback puts the version back exactly as it ran. The
 * parameters among them, then the secret lines (env, run_arg). A rollback takes each item from
 * the record unless the run sets it itself (`explicit`).
 */
export const RUN_SPEC_PARAMETERS = [
  'container_port',
  'command',
  'health_path',
  'health_cmd',
  'network',
  'env_file',
  'task',
  'workers'
] as const satisfies readonly Parameter[]
export const RUN_SPEC = [...RUN_SPEC_PARAMETERS, 'env', 'run_arg'] as const
export type RunSpecItem = (typeof RUN_SPEC)[number]

/** The result line's fields, in the order the script writes them (`result_print`). */
export const RESULT_FIELDS = [
  'deployed',
  'color',
  'previous_color',
  'version',
  'image',
  'open_connections',
  /** the watch's counts: the new version's answers,5xx, the old one's answers,5xx before the switch */
  'watch',
  /** the version the server's state named when the run took the lock (written by result_print itself) */
  'previous_version'
] as const
/** The `serving` marker's fields: what serves on the server as its script ends. */
export const SERVING_FIELDS = ['color', 'version'] as const

/** Exit codes the script ends with on purpose, beside 0 (done) and 1 (failed, with an error). */
export const EXIT_CODES = {
  /** a deploy that waited for the runner's build gave up (await.sh): the runner starts it anew */
  await_gave_up: 75
} as const

/** The script's stdout carries only `::bg-deploy-<marker>:: text` lines. */
export const MARKERS = [
  'phase',
  'event',
  'result',
  'history',
  'serving',
  'warning',
  'error',
  'await',
  /** action check: `ok|warn|fail NAME TEXT` (steps/check.sh) */
  'check'
] as const
export type Marker = (typeof MARKERS)[number]

/** The timeline events the script reports, in order, with their job summary labels. */
export const EVENT_LABELS = {
  begin: 'script started',
  pull: 'pull started',
  pulled: 'image pulled',
  task: 'pre-switch task started',
  tasked: 'pre-switch task done',
  started: 'new container started',
  healthy: 'healthy',
  canary: 'canary started',
  switched: 'nginx switched',
  watched: 'watch window passed',
  reverted: 'switched back after the watch',
  drained: 'old container drained',
  finished: 'finished'
} as const
export type EventName = keyof typeof EVENT_LABELS
export const EVENTS = Object.keys(EVENT_LABELS) as EventName[]

/** The runner's own steps in the timeline output, beside the script's events. */
export const RUNNER_STEP_LABELS = {
  sent: 'server script sent',
  build: 'build started',
  built: 'image built',
  pushed: 'image pushed',
  release: 'draft release asked for',
  drafted: 'draft release ready',
  published: 'release published'
} as const
export type RunnerStep = keyof typeof RUNNER_STEP_LABELS
export type TimelineStep = EventName | RunnerStep
export const TIMELINE_LABELS: Record<TimelineStep, string> = {
  ...EVENT_LABELS,
  ...RUNNER_STEP_LABELS
}

/** A history row's tab-separated fields, in the order the script writes them. */
export const HISTORY_FIELDS = [
  'time',
  'actor',
  'runUrl',
  'action',
  'version',
  'image',
  'color',
  'result'
] as const

/**
 * The stages a script reports before it waits: locked (single, while the runner builds: the lock
 * taken, the serving color known), ready (lb), prepared (host, app), switched (host, lb).
 */
export const STAGES = ['locked', 'ready', 'prepared', 'switched', 'watched', 'watching'] as const
export type Stage = (typeof STAGES)[number]
/**
 * The runner's commands; `switch` takes a color on the load balancer; `pull`: the image is pushed
 * (to an app server started before the load balancer said which color to start, `pull COLOR`);
 * `revert`: the watch over every server breached (the load balancer's, or the runner's sum of
 * each server's), so a server switches back or stops the new color; `pass`: that watch passed.
 */
export const COMMANDS = [
  'pull',
  'switch',
  'finish',
  'keep',
  'undo',
  'abort',
  'revert',
  'pass'
] as const
export type Command = (typeof COMMANDS)[number]
