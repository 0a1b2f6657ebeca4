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
  /** The push event's head commit author (user name, else name), with the message. */
  headCommitAuthor?: string
  /** the command line without ssh-key: the ssh-agent socket to log in with */
  agent?: string
}

export function fromGithubContext(
  ctx: typeof GithubContext,
  env: NodeJS.ProcessEnv = process.env
): RunContext {
  const repository = env.GITHUB_REPOSITORY ?? ''
  const [owner = '', repo = ''] = repository.split('/')
  const serverUrl = ctx.serverUrl.replace(/\/$/, '')
  const head = (
    ctx.payload as {
      head_commit?: { message?: unknown; author?: { username?: unknown; name?: unknown } } | null
    }
  ).head_commit
  const message = head?.message
  const author = head?.author?.username ?? head?.author?.name
  return {
    sha: ctx.sha ?? '',
    owner,
    repo,
    repositoryUrl: `${serverUrl}/${owner}/${repo}`,
    runUrl: `${serverUrl}/${owner}/${repo}/actions/runs/${ctx.runId}`,
    actor: ctx.actor ?? '',
    eventName: ctx.eventName ?? '',
    workspace: env.GITHUB_WORKSPACE ?? process.cwd(),
    headCommitMessage: typeof message === 'string' ? message : undefined,
    headCommitAuthor: typeof author === 'string' ? author : undefined
  }
}

export interface Commit {
  message?: string
  author?: string
}

/** The commit's message and author: the push event's head commit, else `GITHUB_SHA` read with git. */
export async function readCommit(ctx: RunContext, runner: Runner): Promise<Commit> {
  if (ctx.headCommitMessage !== undefined)
    return { message: ctx.headCommitMessage, author: ctx.headCommitAuthor }
  if (!ctx.sha) return {}
  try {
    const r = await runChecked(
      runner,
      'git',
      ['-C', ctx.workspace, 'log', '-1', '--format=%an%x00%B', ctx.sha, '--'],
      { silent: true }
    )
    const nul = r.stdout.indexOf('\0')
    return nul < 0
      ? { message: r.stdout }
      : { author: r.stdout.slice(0, nul), message: r.stdout.slice(nul + 1) }
  } catch (e) {
    throw new Error(
      `Cannot read the commit message of ${ctx.sha} in ${ctx.workspace}: run actions/checkout before this step, or set the 'version' input. (${(e as Error).message})`
    )
  }
}
