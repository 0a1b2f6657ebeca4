import type { Accessory } from './compose.js'
// The one typed, validated configuration a run works from (config.ts builds it), and what the
// run's context supplies to it. Its own file, so that each checker (config-app.ts,
// config-build.ts, config-hosts.ts) and config.ts, which calls them, import it from below.
import type { Engine, InputName, SwitchMode } from './config-inputs.js'
import type { HostKeyPin } from './hostkey.js'
import type { RunSpecItem } from './remote/protocol.js'

export interface Config {
  /** the image repository, without a tag or digest */
  image: string
  /**
   * build: false: the image pushed already, as a reference in `image`: ':tag', '@sha256:…' or
   * ':tag@sha256:…' (undefined: the run builds and pushes the image itself)
   */
  prebuilt?: string
  registry: string
  context: string
  dockerfile: string
  buildArgs: string[]
  registryUsername?: string
  registryPassword?: string
  /**
   * what the servers log in with to pull: the pull credential (source pull), the push one when
   * push-credential-to-servers says so (source push), or nothing: an anonymous pull (source none)
   */
  pull: { username?: string; password?: string; source: 'pull' | 'push' | 'none' }
  version?: string
  versionPattern: RegExp
  githubToken?: string
  createRelease: boolean
  /** a server: where, as whom, its pinned host key; and how it is reached */
  ssh: SshTarget & {
    /** seconds until the SSH connection must be ready (TCP, handshake, authentication) */
    connectTimeout: number
    /** proxy-jump: the bastion the connection goes through (ssh -J) */
    jump?: JumpHost
  }
  /** seconds a server's script may run (from its start, or from the image pushed) before the run closes its connection */
  commandTimeout: number
  app: {
    name: string
    containerPort: number
    bluePort: number
    greenPort: number
    network?: string
    env: [string, string][]
    envFile?: string
    dockerRunArgs: string[]
    /** the web's command (compose-file's command, after its entrypoint's other words) */
    command?: string[]
    /** the health command compose-file's healthcheck gives (health-cmd wins) */
    composeHealthCmd?: string
    /** compose-file's services of other images: started once when missing, never recreated */
    accessories: Accessory[]
    /**
     * pre-switch-command: run once per deploy in a one-off container of the new image (the app's
     * env, network and run arguments) on the first server, before any color starts anywhere
     */
    task?: { words: string[]; timeout: number; force: boolean }
    /** workers: commands of the same image and env that swap with the web (steps/workers.sh) */
    workers: Worker[]
    /** the run spec items this run's inputs set (a rollback takes the others from the record) */
    given: RunSpecItem[]
  }
  health: { path: string; timeout: number; interval: number }
  drainTimeout: number
  nginx: { upstreamFile: string; upstreamName: string; testCommand: string; reloadCommand: string }
  /** reload: nginx reload per switch; dnat: nginx points at livePort, a NAT rule picks the color */
  switch: { mode: SwitchMode; livePort: number }
  rollback?: string
  /** telling GitHub and the team (src/report.ts) */
  report: {
    /** the app's public URL: the url output, the deployment's environment URL, the message's link */
    url?: string
    /** a GitHub deployment record in this environment (opt-in) */
    environment?: string
    /** a Slack-compatible incoming webhook (secret) */
    notifyUrl?: string
  }
  /**
   * watch: seconds the new color is watched after the switch, the old one warm (0: off);
   * keepWarm: seconds the old color keeps running after a deploy (0: stopped at once)
   */
  after: {
    watch: number
    /** percentage points of 5xx the new version may have above the one it replaces */
    maxErrorRate: number
    maxHealthFailures: number
    /** the watch checks the health path only, not nginx's answers (asked for by name) */
    healthOnly: boolean
    keepWarm: number
    /**
     * canary steps before the full switch (empty: none): the percent of clients each step sends
     * to the new color, sticky by `key` (an nginx expression), for `stepTime` seconds each
     */
    canary: { steps: number[]; stepTime: number; key: string }
  }
  /** ssh: blue-green over SSH; swarm: a Docker Swarm service on the manager in `host` */
  engine: { kind: Engine; replicas: number; healthCmd?: string; parallelism: number }
  /** every server (the first is `ssh`); the load balancer in front of them, if any */
  hosts: Config['ssh'][]
  lb?: Config['ssh']
  fleet: {
    /** where the app servers publish the colors' ports */
    bindAddress: string
    /** how many servers prepare at once (0: all) */
    maxParallel: number
    /** false: prepare and preview, then stop; a later run switches */
    promote: boolean
    previewFile?: string
    /** who may reach the previews (addresses, CIDR networks); empty: everyone */
    previewAllow: string[]
    /** the run goes in two phases (prepare, then commit): several servers, a load balancer, previews, or promote: false */
    several: boolean
    /** the index in `hosts` of the server that runs the pre-switch task (pre-switch-host; 0) */
    taskHost: number
  }
}

/** A worker: a command of the app's image, run beside the web in each color. */
export interface Worker {
  name: string
  words: string[]
  /** never two at once, on any server or color: the old one stops before the new one starts */
  single: boolean
  stopSignal: string
  /** seconds the old one gets after its stop signal to finish the jobs in progress */
  stopTimeout: number
}

/** An SSH endpoint: its address, the user and key to log in with, its pinned host key. */
export interface SshTarget {
  host: string
  port: number
  username: string
  /** empty with `agent` */
  privateKey: string
  passphrase?: string
  /** an ssh-agent's socket to authenticate with instead of a key (the command line only) */
  agent?: string
  hostKeyPins: HostKeyPin[]
  insecureIgnoreHostKey: boolean
}

/** A bastion (proxy-jump): its own address, user, key and pinned host key. */
export type JumpHost = SshTarget

/** What the run's context supplies to defaults. */
export interface ConfigContext {
  /** owner/repo */
  repository: string
  workspace: string
  /** the runner's environment, for compose-file's ${VAR} (default: process.env) */
  env?: Record<string, string | undefined>
  /** inputs no message may quote besides the secrets (the command line's values read from files) */
  unquoted?: readonly InputName[]
  /** the command line without ssh-key: the ssh-agent socket (SSH_AUTH_SOCK) to log in with */
  agent?: string
}
