import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import type { Config } from './config.js'
import { runChecked, type Runner } from './runner.js'

export interface BuildPlan {
  /** repository:tag for each tag, most specific first */
  refs: string[]
  labels: Record<string, string>
}

/** OCI labels that tie the image to its version and commit. */
export function imageLabels(opts: {
  version?: string
  sha: string
  sourceUrl: string
}): Record<string, string> {
  return {
    'org.opencontainers.image.source': opts.sourceUrl,
    'org.opencontainers.image.revision': opts.sha,
    ...(opts.version ? { 'org.opencontainers.image.version': opts.version } : {})
  }
}

/** `docker build` argv. The classic CLI form works with and without buildx installed. */
export function buildArgs(
  config: Pick<Config, 'dockerfile' | 'buildArgs' | 'context'>,
  plan: BuildPlan
): string[] {
  return [
    'build',
    '--file',
    config.dockerfile,
    ...plan.refs.flatMap((ref) => ['--tag', ref]),
    ...Object.entries(plan.labels).flatMap(([k, v]) => ['--label', `${k}=${v}`]),
    ...config.buildArgs.flatMap((a) => ['--build-arg', a]),
    '--',
    config.context
  ]
}

/**
 * The build's command line as the log shows it: each build argument by its name only, since a
 * value may be secret (it also stays in the image's history: BuildKit's --secret is for secrets).
 */
export function shownBuildArgs(args: string[]): string[] {
  return args.map((a, i) => (args[i - 1] === '--build-arg' ? `${a.slice(0, a.indexOf('='))}=…` : a))
}

export function loginArgs(registry: string, username: string): string[] {
  return ['login', '--username', username, '--password-stdin', '--', registry]
}

export function pushArgs(ref: string): string[] {
  return ['push', '--', ref]
}

/** The manifest digest `docker push` reports: `v1: digest: sha256:… size: 943`. */
export function parsePushDigest(output: string): string | undefined {
  return /digest: (sha256:[a-f0-9]{64})/.exec(output)?.[1]
}

export interface PushResult {
  refs: string[]
  digest?: string
}

type ImageConfig = Pick<
  Config,
  'dockerfile' | 'buildArgs' | 'context' | 'registry' | 'registryUsername' | 'registryPassword'
>

/** Build and tag the image; `signal` stops a build that is no longer wanted. */
export async function buildImage(
  runner: Runner,
  config: ImageConfig,
  plan: BuildPlan,
  cwd: string,
  signal?: AbortSignal
): Promise<void> {
  const args = buildArgs(config, plan)
  await runChecked(runner, 'docker', args, { cwd, signal, shown: shownBuildArgs(args) })
}

/**
 * Log in (when credentials are given) and push every ref. A login goes into a temporary Docker
 * config used for the push only and removed afterwards, failed or not, so no credential stays on a
 * (self-hosted) runner.
 */
export async function pushImage(
  runner: Runner,
  config: ImageConfig,
  refs: string[],
  cwd: string
): Promise<PushResult> {
  const login = Boolean(config.registryUsername && config.registryPassword)
  const dockerConfig = login
    ? mkdtempSync(path.join(process.env.RUNNER_TEMP || tmpdir(), 'bg-deploy-docker-'))
    : undefined
  const env = dockerConfig ? { DOCKER_CONFIG: dockerConfig } : undefined
  try {
    if (login)
      await runChecked(runner, 'docker', loginArgs(config.registry, config.registryUsername!), {
        input: config.registryPassword,
        env
      })
    let digest: string | undefined
    for (const ref of refs) {
      const r = await runChecked(runner, 'docker', pushArgs(ref), { cwd, env })
      digest ??= parsePushDigest(r.stdout + r.stderr)
    }
    return { refs, digest }
  } finally {
    if (dockerConfig) rmSync(dockerConfig, { recursive: true, force: true })
  }
}

/** Build, tag and push every ref (buildImage, then pushImage). */
export async function buildAndPush(
  runner: Runner,
  config: ImageConfig,
  plan: BuildPlan,
  cwd: string
): Promise<PushResult> {
  await buildImage(runner, config, plan, cwd)
  return pushImage(runner, config, plan.refs, cwd)
}
