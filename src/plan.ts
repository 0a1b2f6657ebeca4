// The version a run deploys: from the commit or the input, then checked with GitHub and the
// registry (was it built before, here or elsewhere?), or read from an image pushed before.
import * as core from '@actions/core'
import type { Config } from './config.js'
import { readCommit } from './context.js'
import * as jobLog from './job-log.js'
import type { Registry } from './registry.js'
import { releasedElsewhere, type ReleasesApi } from './release.js'
import type { Run } from './run.js'
import { planVersion, shaTag, type VersionPlan } from './version.js'

export const REVISION = 'org.opencontainers.image.revision'

/** The version the commit asks for, before GitHub and the registry are asked. */
export interface LocalPlan {
  plan: VersionPlan
}

/** The version this run deploys, and whether its image was built before. */
export interface Planned {
  plan: VersionPlan
  built: 'here' | 'elsewhere' | 'no'
  registry: Registry
  releases?: ReleasesApi
  /** its messages, printed once the build's output is done */
  notes: (() => void)[]
}

export async function readPlan({ config, ctx, deps }: Run): Promise<LocalPlan> {
  const commit = config.version ? {} : await readCommit(ctx, deps.runner)
  const plan = planVersion({
    explicit: config.version,
    message: commit.message,
    author: commit.author,
    pattern: config.versionPattern,
    sha: ctx.sha
  })
  if (plan.version && config.createRelease && !config.githubToken)
    throw new Error(
      "Input 'github-token' is empty: pass ${{ github.token }} or set create-release: false."
    )
  return { plan }
}

export async function checkPlan(
  { config, ctx, deps }: Run,
  { plan: asked }: LocalPlan
): Promise<Planned> {
  let plan = asked
  const notes: (() => void)[] = []
  const registry = deps.registry(config)
  const releases =
    plan.version && config.createRelease ? deps.releases(config.githubToken!) : undefined
  const built = plan.version
    ? await builtBefore(plan, ctx.sha, registry, config, releases, notes)
    : 'no'
  if (built === 'elsewhere') plan = { source: 'none', tag: shaTag(ctx.sha) }
  const version = plan.version
  if (version)
    notes.push(() =>
      core.info(
        `Version ${version} (from ${plan.source === 'input' ? "the 'version' input" : 'the commit message'})`
      )
    )
  else if (plan.notReleased) {
    const why = plan.notReleased
    notes.push(() =>
      jobLog.notice(`${why} The image is tagged ${plan.tag}; no release is made.`, {
        title: 'No release'
      })
    )
  } else if (built !== 'elsewhere')
    notes.push(() =>
      jobLog.notice(
        `No version found in the commit message, so the image is tagged ${plan.tag} and no release is made. To release, put a version such as v1.2.3 in the commit message or set the 'version' input.`,
        { title: 'No version in the commit message' }
      )
    )
  return { plan, built, registry, releases, notes }
}

/**
 * The pushed image's digest, and the version it deploys as: a version tagged on another digest,
 * or released for another commit, deploys as the commit's sha- name (a notice says where it is).
 */
export async function findPushed(
  { config, ctx, deps }: Run,
  { plan: asked }: LocalPlan
): Promise<Planned & { digest: string; tagged: boolean }> {
  const registry = deps.registry(config)
  const given = `${config.image}${config.prebuilt}`
  const read = (reference: string) =>
    registry.digest(reference).catch((e: Error) => {
      const name = `${config.image}${reference.startsWith('sha256:') ? '@' : ':'}${reference}`
      throw new Error(`Cannot read ${name} from ${config.registry}: ${e.message}`)
    })
  const releases =
    asked.version && config.createRelease ? deps.releases(config.githubToken!) : undefined
  const [digest, onGithub, versionDigest] = await Promise.all([
    read(config.prebuilt!.replace(/^:/, '').replace(/^.*@/, '')),
    asked.version && releases ? releasedElsewhere(releases, asked.version, ctx.sha) : undefined,
    asked.version ? read(asked.tag) : undefined
  ])
  if (!digest)
    throw new Error(
      `${given} is not in ${config.registry}. With build: false the action deploys an image pushed before: push it first (e.g. docker/build-push-action with push: true) and pass its digest, as image: ${config.image}@\${{ steps.<id>.outputs.digest }}.`
    )
  const notes: (() => void)[] = []
  let plan = asked
  const elsewhere =
    onGithub ??
    (versionDigest && versionDigest !== digest
      ? `${config.image}:${asked.tag} names another image (${versionDigest})`
      : undefined)
  if (elsewhere) {
    plan = { source: 'none', tag: shaTag(ctx.sha) }
    notes.push(() =>
      jobLog.notice(
        `${asked.version} is released already: ${elsewhere}. A version is released once, so this deploy is named ${plan.tag}. To release it, name a new version.`,
        { title: `${asked.version} is released already` }
      )
    )
  } else if (plan.version)
    notes.push(() =>
      core.info(
        `Version ${plan.version} (from ${plan.source === 'input' ? "the 'version' input" : 'the commit message'})`
      )
    )
  return {
    plan,
    built: 'no',
    registry,
    releases: plan.version ? releases : undefined,
    notes,
    digest,
    // the version's tag names this digest already (a re-run, or a deploy to the next environment)
    tagged: versionDigest === digest
  }
}

/**
 * Was this version built before? 'here': the registry holds it for this very commit (a re-run);
 * 'elsewhere': a tag, release or draft of it exists for another commit, or the registry holds
 * it from another commit — it is never released or pushed again (a notice says where it is);
 * 'no': it is new.
 */
export async function builtBefore(
  plan: VersionPlan,
  sha: string,
  registry: Registry,
  config: Config,
  releases: ReleasesApi | undefined,
  notes: (() => void)[]
): Promise<'here' | 'elsewhere' | 'no'> {
  const notice = (where: string) =>
    notes.push(() =>
      jobLog.notice(
        `${plan.version} is released already: ${where}. A version is released once, so this commit deploys as ${shaTag(sha)}. To release it, name a new version.`,
        { title: `${plan.version} is released already` }
      )
    )
  // GitHub and the registry are asked at once
  const [onGithub, labels] = await Promise.all([
    releases ? releasedElsewhere(releases, plan.version!, sha) : undefined,
    registry.labels(plan.tag).catch((e: Error) => {
      throw new Error(
        `Cannot check whether ${config.image}:${plan.tag} is in the registry already (a version is never pushed over): ${e.message}`
      )
    })
  ])
  if (onGithub) {
    notice(onGithub)
    return 'elsewhere'
  }
  if (!labels) return 'no'
  if (labels[REVISION] === sha) return 'here'
  notice(
    `${config.image}:${plan.tag} is in the registry, built from ${labels[REVISION] ? `commit ${labels[REVISION].slice(0, 7)}` : 'an unknown commit'}`
  )
  return 'elsewhere'
}
