import * as core from '@actions/core'
import * as jobLog from './job-log.js'
import { context } from '@actions/github'
import { loadConfig, readInputs, SECRET_INPUTS, type InputName } from './config.js'
import { fromGithubContext, type RunContext } from './context.js'
import { deploy, type Outcome } from './deploy.js'
import { parseDotenv } from './dotenv.js'
import { registryCredentials, registryClient } from './registry.js'
import { githubReleases } from './release.js'
import { foreignText } from './foreign.js'
import { execRunner } from './runner.js'
import { connectSsh } from './ssh.js'
import { writeSummary } from './summary.js'
import {
  githubDeployments,
  notification,
  notify,
  recordDeployment,
  resultOf,
  type RunResult
} from './report.js'
import type { Config } from './config.js'

/**
 * Register every secret input with the log masker, before anything is logged: each value whole,
 * each of its lines, and for `env` each value as the dotenv rules read it (and its lines), so no
 * line of a multi-line secret (a PEM key) is printed unmasked.
 */
export function maskSecrets(get: (name: string) => string): void {
  for (const name of SECRET_INPUTS) {
    const value = get(name)
    if (!value) continue
    const parts = new Set([value, ...linesOf(value)])
    if (name === 'env') {
      for (const line of value.split(/\r?\n/)) {
        const v = line.slice(line.indexOf('=') + 1)
        parts
          .add(v)
          .add(v.trim())
          .add(v.trim().replace(/^["']|["']$/g, ''))
      }
      for (const [, v] of parseDotenv(value).entries)
        for (const p of [v, ...linesOf(v)]) parts.add(p)
    }
    // very short values (0, 1, on) would mask every occurrence of them in the log
    for (const part of parts) if (part.trim().length >= 3) core.setSecret(part)
  }
}

function linesOf(value: string): string[] {
  return value.split(/\r\n|\r|\n/).map((l) => l.trim())
}

/** How the run is started: by the runner (the default), or by the command line (src/cli.ts). */
export interface RunStart {
  /** the inputs by name ('' when not given); default: the action's inputs */
  getInput?: (name: string) => string
  /** the workflow's context; default: the runner's */
  ctx?: RunContext
  /** the command line: no log masking (nothing to mask in a terminal), outputs or job summary */
  cli?: boolean
  /** inputs the command line read from a file: no message quotes them */
  unquoted?: readonly InputName[]
}

export async function run(start: RunStart = {}): Promise<Outcome> {
  const outcome: Outcome = { tags: [], deployed: false, events: [] }
  const get = start.getInput ?? ((name: string) => core.getInput(name))
  const began = Date.now()
  let config: Config | undefined
  let ctx: RunContext | undefined
  try {
    if (!start.cli) maskSecrets(get)
    ctx = start.ctx ?? fromGithubContext(context)
    config = loadConfig(readInputs(get), {
      repository: `${ctx.owner}/${ctx.repo}`,
      workspace: ctx.workspace,
      unquoted: start.unquoted,
      agent: ctx.agent
    })
    const { owner, repo } = ctx
    await deploy(
      config,
      ctx,
      {
        runner: execRunner,
        releases: (token) => githubReleases(token, owner, repo),
        registry: (c) => registryClient(c.image, c.registry, registryCredentials(c.registry, c)),
        connect: (ssh) =>
          connectSsh(ssh, { warn: (m) => jobLog.warning(m, { title: 'Host key not checked' }) })
      },
      outcome
    )
  } catch (e) {
    outcome.error = e instanceof Error ? e.message : String(e)
    // an annotation with a title that says where it failed; the step fails with it
    jobLog.error(outcome.error, {
      title: `bg-deploy failed${outcome.failedPhase ? `: ${outcome.failedPhase}` : ''}`
    })
    process.exitCode = 1
  } finally {
    // a run that failed before its result line: what serves still is the previous version
    if (outcome.error && outcome.previousVersion === undefined && outcome.serving?.version)
      outcome.previousVersion = outcome.serving.version
    const result = resultOf(outcome, !!config?.rollback)
    if (config && ctx) await tell(config, ctx, outcome, result, Date.now() - began)
    if (!start.cli) {
      setOutputs(outcome, result, config?.report.url)
      try {
        await writeSummary(outcome, result)
      } catch (e) {
        jobLog.warning(`The job summary could not be written: ${(e as Error).message}`)
      }
    }
  }
  return outcome
}

/**
 * The deployment record and the message, once the run has ended: each opt-in, and a failure to
 * tell is a warning, never the run's failure.
 */
async function tell(
  config: Config,
  ctx: RunContext,
  outcome: Outcome,
  result: RunResult,
  ms: number
): Promise<void> {
  const { environment, url, notifyUrl } = config.report
  if (environment && result !== 'prepared') {
    if (!config.githubToken)
      jobLog.warning(
        "deployment-environment is set but 'github-token' is empty: no deployment record. Pass ${{ github.token }} with permissions: deployments: write."
      )
    else
      try {
        // GITHUB_API_URL, as for the release (GitHub Enterprise Server too)
        const releases = githubReleases(config.githubToken, ctx.owner, ctx.repo)
        const api = githubDeployments(config.githubToken, ctx.owner, ctx.repo)
        const id = await recordDeployment(api, {
          environment,
          url,
          ctx,
          outcome,
          result,
          tagExists: async (tag) => (await releases.tagCommit(tag)) !== undefined
        })
        core.info(`GitHub deployment ${id} in ${environment}: ${result}`)
      } catch (e) {
        jobLog.warning(
          `The GitHub deployment record could not be written (${(e as Error).message}): the job needs permissions: deployments: write.`
        )
      }
  }
  if (notifyUrl)
    try {
      await notify(notifyUrl, notification(config, ctx, outcome, result, ms, url))
      core.info('The notification was sent')
    } catch (e) {
      jobLog.warning(`The notification could not be sent: ${(e as Error).message}`)
    }
}

function setOutputs(o: Outcome, result: RunResult, url?: string): void {
  foreignText.resume()
  core.setOutput('previous-version', o.previousVersion ?? '')
  core.setOutput('result', result)
  core.setOutput('url', url ?? '')
  core.setOutput('version', o.version ?? '')
  core.setOutput('image', o.image ?? '')
  core.setOutput('tags', o.tags.join('\n'))
  core.setOutput('digest', o.digest ?? '')
  core.setOutput('release-url', o.releaseUrl ?? '')
  core.setOutput('color', o.color ?? '')
  core.setOutput('previous-color', o.previousColor ?? '')
  core.setOutput('deployed', String(o.deployed))
  core.setOutput('timeline', JSON.stringify(o.events.map((e) => ({ step: e.name, ms: e.ms }))))
}
