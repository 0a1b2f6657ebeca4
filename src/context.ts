import type { context as GithubContext } from '@actions/github'
import { runChecked, type Runner } from './runner.js'

/** What a run knows about the workflow that started it. */
export interface RunContext {
  sha: string
  owner: string
  repo: string
  /** https://github.com/owner/repo */
  repositoryUrl: string
  runUrl: string
  actor: string
  eventName: string
  workspace: string
  /** The push event's head commit message; absent on workflow_dispatch and when head_commit is null. */
  headCommitMessage?: string
}

export function fromGithubContext(
  ctx: typeof GithubContext,
  env: NodeJS.ProcessEnv = process.env
): RunContext {
  const repository = env.GITHUB_REPOSITORY ?? ''
  const [owner = '', repo = ''] = repository.split('/')
  const serverUrl = ctx.serverUrl.replace(/\/$/, '')
  const message = (ctx.payload as { head_commit?: { message?: unknown } | null }).head_commit
    ?.message
  return {
    sha: ctx.sha ?? '',
    owner,
    repo,
    repositoryUrl: `${serverUrl}/${owner}/${repo}`,
    runUrl: `${serverUrl}/${owner}/${repo}/actions/runs/${ctx.runId}`,
    actor: ctx.actor ?? '',
    eventName: ctx.eventName ?? '',
    workspace: env.GITHUB_WORKSPACE ?? process.cwd(),
    headCommitMessage: typeof message === 'string' ? message : undefined
  }
}

/** The commit message: the push event's head commit, else `GITHUB_SHA` read with git. */
export async function readCommitMessage(
  ctx: RunContext,
  runner: Runner
): Promise<string | undefined> {
  if (ctx.headCommitMessage !== undefined) return ctx.headCommitMessage
  if (!ctx.sha) return undefined
  try {
    const r = await runChecked(
      runner,
      'git',
      ['-C', ctx.workspace, 'log', '-1', '--format=%B', ctx.sha, '--'],
      {
        silent: true
      }
    )
    return r.stdout
  } catch (e) {
    throw new Error(
      `Cannot read the commit message of ${ctx.sha} in ${ctx.workspace}: run actions/checkout before this step, or set the 'version' input. (${(e as Error).message})`
    )
  }
}
