import * as core from '@actions/core'
import { context } from '@actions/github'
import { loadConfig, readInputs, SECRET_INPUTS } from './config.js'
import { fromGithubContext } from './context.js'
import { deploy, type Outcome } from './deploy.js'
import { githubReleases } from './release.js'
import { execRunner } from './runner.js'
import { connectSsh } from './ssh.js'
import { writeSummary } from './summary.js'

/** Register every secret input (and each of its lines) with the log masker. */
export function maskSecrets(get: (name: string) => string): void {
  for (const name of SECRET_INPUTS) {
    const value = get(name)
    if (!value) continue
    const parts = new Set([value])
    for (const line of value.split(/\r?\n/)) {
      const v = name === 'env' ? line.slice(line.indexOf('=') + 1) : line.trim()
      // very short values (0, 1, on) would mask every occurrence of them in the log
      if (v.length >= 3) parts.add(v)
    }
    for (const part of parts) core.setSecret(part)
  }
}

export async function run(): Promise<void> {
  const outcome: Outcome = { tags: [], deployed: false, events: [] }
  try {
    maskSecrets((name) => core.getInput(name))
    const ctx = fromGithubContext(context)
    const config = loadConfig(
      readInputs((name) => core.getInput(name)),
      {
        repository: `${ctx.owner}/${ctx.repo}`,
        workspace: ctx.workspace
      }
    )
    await deploy(
      config,
      ctx,
      {
        runner: execRunner,
        releases: (token) => githubReleases(token, ctx.owner, ctx.repo),
        connect: (ssh) => connectSsh(ssh, { warn: (m) => core.warning(m) })
      },
      outcome
    )
  } catch (e) {
    core.setFailed(e instanceof Error ? e.message : String(e))
  } finally {
    setOutputs(outcome)
    await writeSummary(outcome)
  }
}

function setOutputs(o: Outcome): void {
  core.setOutput('version', o.version ?? '')
  core.setOutput('image', o.image ?? '')
  core.setOutput('tags', o.tags.join('\n'))
  core.setOutput('release-url', o.releaseUrl ?? '')
  core.setOutput('color', o.color ?? '')
  core.setOutput('previous-color', o.previousColor ?? '')
  core.setOutput('deployed', String(o.deployed))
  core.setOutput('timeline', JSON.stringify(o.events.map((e) => ({ step: e.name, ms: e.ms }))))
}
