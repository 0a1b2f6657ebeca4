// Telling GitHub and the team what a run did: its one-word result, a GitHub deployment record with
// its status (opt-in: deployment-environment), and a Slack-compatible message (opt-in:
// notify-url). Each is sent once the run has ended, whatever its end; a failure to tell is a
// warning, never the run's failure.
import type { Config } from './config.js'
import { githubClient } from './release.js'
import type { RunContext } from './context.js'
import type { Outcome } from './run.js'

/** What a run ended with, in one word: the `result` output, the record's state, the message. */
export type RunResult = 'deployed' | 'rolled-back' | 'prepared' | 'switched-back' | 'failed'

export function resultOf(o: Outcome, rollback: boolean): RunResult {
  if (o.error) {
    const last = o.history?.at(-1)?.result ?? ''
    return /^rolled-back-after-/.test(last) || /switched back/.test(o.error)
      ? 'switched-back'
      : 'failed'
  }
  if (o.prepared) return 'prepared'
  if (!o.deployed) return 'failed'
  return rollback ? 'rolled-back' : 'deployed'
}

/** "v1.3.0 → v1.4.0", or the version alone on a first deploy. */
export function versionChange(o: Outcome): string {
  const to = o.version ?? o.image ?? '(none)'
  return o.previousVersion && o.previousVersion !== to ? `${o.previousVersion} → ${to}` : to
}

const SAY: Record<RunResult, string> = {
  deployed: 'deployed',
  'rolled-back': 'rolled back',
  prepared: 'prepared (not switched to: promote false)',
  'switched-back': 'switched back by the watch',
  failed: 'failed'
}

/** One line a person reads at a glance: app, versions, result, who, how long. */
export function headline(
  config: Config,
  ctx: RunContext,
  o: Outcome,
  result: RunResult,
  ms: number
): string {
  const versions =
    result === 'rolled-back'
      ? `${o.previousVersion ?? '?'} → ${o.version ?? '?'}`
      : versionChange(o)
  return `${config.app.name} ${versions}: ${SAY[result]} by ${ctx.actor} in ${(ms / 1000).toFixed(0)} s`
}

/** The GitHub deployment API the record uses (Octokit's, or a stand-in in tests). */
export interface DeploymentsApi {
  create(p: {
    ref: string
    environment: string
    description: string
    payload: Record<string, string>
  }): Promise<{ id: number }>
  status(
    id: number,
    p: {
      state: 'success' | 'failure' | 'error' | 'inactive'
      description: string
      environment_url?: string
      log_url: string
    }
  ): Promise<void>
}

export function githubDeployments(
  token: string,
  owner: string,
  repo: string,
  opts: { retryBaseMs?: number; baseUrl?: string } = {}
): DeploymentsApi {
  const octokit = githubClient(token, opts)
  return {
    async create(p) {
      const r = await octokit.rest.repos.createDeployment({
        owner,
        repo,
        ...p,
        auto_merge: false,
        // the checks of the commit ran before the deploy; a rollback's tag has none of its own
        required_contexts: [],
        transient_environment: false
      })
      if (!('id' in r.data)) throw new Error(`GitHub did not create it: ${JSON.stringify(r.data)}`)
      return { id: r.data.id }
    },
    async status(id, p) {
      await octokit.rest.repos.createDeploymentStatus({
        owner,
        repo,
        deployment_id: id,
        ...p,
        auto_inactive: true
      })
    }
  }
}

/** GitHub's description field takes 140 characters. */
const short = (s: string) => (s.length > 140 ? `${s.slice(0, 139)}…` : s)

/**
 * The deployment record: against the version's tag when it has a release (a rollback names the
 * version it put back, not the dispatch commit), else the commit; its status says how it ended.
 */
export async function recordDeployment(
  api: DeploymentsApi,
  a: {
    environment: string
    url?: string
    ctx: RunContext
    outcome: Outcome
    result: RunResult
    tagExists: (tag: string) => Promise<boolean>
  }
): Promise<number> {
  const o = a.outcome
  const version = o.version
  const ref = version && (await a.tagExists(version)) ? version : a.ctx.sha || version || ''
  if (!ref) throw new Error('no commit or version to record the deployment against')
  const { id } = await api.create({
    ref,
    environment: a.environment,
    description: short(`${SAY[a.result]}: ${versionChange(o)}`),
    payload: {
      version: version ?? '',
      previous_version: o.previousVersion ?? '',
      image: o.image ?? '',
      result: a.result
    }
  })
  const state =
    a.result === 'deployed' || a.result === 'rolled-back'
      ? 'success'
      : a.result === 'prepared'
        ? 'inactive'
        : 'failure'
  await api.status(id, {
    state,
    description: short(
      a.result === 'switched-back'
        ? `switched back to ${o.previousVersion ?? 'the previous version'}: ${o.error ?? ''}`
        : o.error
          ? `failed: ${o.error}`
          : `${versionChange(o)} serves`
    ),
    ...(a.url && state === 'success' ? { environment_url: a.url } : {}),
    log_url: a.ctx.runUrl
  })
  return id
}

/** A Slack-compatible incoming-webhook message (Slack, Mattermost, Rocket.Chat take `text`). */
export function notification(
  config: Config,
  ctx: RunContext,
  o: Outcome,
  result: RunResult,
  ms: number,
  url?: string
): { text: string } {
  const icon =
    result === 'deployed' || result === 'rolled-back' ? '✅' : result === 'prepared' ? '⏸️' : '❌'
  const lines = [`${icon} ${headline(config, ctx, o, result, ms)}`]
  if (o.error) lines.push(`> ${o.error.split('\n')[0]!.slice(0, 300)}`)
  const links = [
    /^https?:\/\//.test(ctx.runUrl) ? `<${ctx.runUrl}|the run>` : ctx.runUrl,
    ...(url ? [`<${url}|${url}>`] : []),
    ...(o.releaseUrl && !o.releaseDraft ? [`<${o.releaseUrl}|release>`] : [])
  ]
  lines.push(links.join(' · '))
  return { text: lines.join('\n') }
}

/** POST the message; an answer other than 2xx is an error naming the status (never the URL). */
export async function notify(
  url: string,
  message: { text: string },
  timeoutMs = 10_000
): Promise<void> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(message),
    signal: AbortSignal.timeout(timeoutMs)
  })
  if (!res.ok) throw new Error(`the webhook answered ${res.status} ${res.statusText}`)
}
