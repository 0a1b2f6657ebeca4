import semver from 'semver'

// Semver with a leading `v`, as people write it in commit messages: v1.2.3, v1.2.3-rc.1,
// v1.2.3+build.5. Not preceded by a word character or dot (so `xv1.2.3` and `1.v1.2.3` do
// not count) and not followed by more version-like text (so `v1.2.3.4` and `v1.2.34x` do not).
const NUM = '(?:0|[1-9]\\d*)'
const IDENT = '[0-9A-Za-z-]+'
export const DEFAULT_VERSION_PATTERN = new RegExp(
  `(?<![\\w.])v${NUM}\\.${NUM}\\.${NUM}(?:-${IDENT}(?:\\.${IDENT})*)?(?:\\+${IDENT}(?:\\.${IDENT})*)?(?![\\w+-]|\\.\\w)`
)

/** A version as the pattern finds it: its first capture group if it has one, else the match. */
function found(match: RegExpExecArray): string | undefined {
  return (match[1] ?? match[0]).trim() || undefined
}

/** The first version in `message`. */
export function parseVersion(
  message: string,
  pattern: RegExp = DEFAULT_VERSION_PATTERN
): string | undefined {
  const match = new RegExp(pattern.source, pattern.flags.replace('g', '')).exec(message)
  return match ? found(match) : undefined
}

/** Every different version `message` names, in order (v1.2.3 and 1.2.3 are the same one). */
export function versionsIn(message: string, pattern: RegExp = DEFAULT_VERSION_PATTERN): string[] {
  const all = new RegExp(
    pattern.source,
    pattern.flags.includes('g') ? pattern.flags : pattern.flags + 'g'
  )
  const versions: string[] = []
  for (const match of message.matchAll(all)) {
    const v = found(match)
    if (v && !versions.some((w) => sameVersion(v, w))) versions.push(v)
    if (match[0] === '') break
  }
  return versions
}

/** Semver equality where both parse (v1.2.3 = 1.2.3, build metadata aside), else the same text. */
export function sameVersion(a: string, b: string): boolean {
  const x = semver.parse(a)
  const y = semver.parse(b)
  return x && y ? semver.eq(x, y) && x.build.join('.') === y.build.join('.') : a === b
}

/** A pre-release has a `-` part before any `+build` part: v1.2.3-rc.1. */
export function isPrerelease(version: string): boolean {
  const v = semver.parse(version)
  if (v) return v.prerelease.length > 0
  return version.split('+', 1)[0]!.includes('-')
}

/** Docker tags cannot hold `+`; semver build metadata becomes `_` (as Helm and others do). */
export function toImageTag(version: string): string {
  return version.replace(/\+/g, '_')
}

// A Docker tag: 128 characters of [A-Za-z0-9_.-], not starting with . or -.
const IMAGE_TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/

/** Why `version` cannot be used as an image tag and release tag, or undefined when it can. */
export function versionProblem(version: string): string | undefined {
  if (!IMAGE_TAG.test(toImageTag(version)))
    return 'expected a version such as v1.2.3: up to 128 letters, digits, and . _ - + characters, not starting with . or -'
  return undefined
}

export interface VersionPlan {
  /** The release version, when one was found. */
  version?: string
  /** Where it came from. */
  source: 'input' | 'commit' | 'none'
  /** The image tag pushed before the deploy: the version's, or sha-<commit>. */
  tag: string
  /** Why the commit message's version is not released (a notice), when it is not. */
  notReleased?: string
}

/**
 * Decide the version for a run. A version written in the commit message releases it, unless the
 * message only mentions versions: a bot's commit (Dependabot, Renovate), a dependency update
 * (`chore(deps): …`), a revert, or a message naming several different versions. The `version`
 * input always wins. Whether the version was released before is checked later, against GitHub
 * and the registry (see deploy.ts).
 */
export function planVersion(opts: {
  explicit?: string
  message?: string
  author?: string
  pattern?: RegExp
  sha: string
}): VersionPlan {
  if (opts.explicit)
    return { version: opts.explicit, source: 'input', tag: toImageTag(opts.explicit) }
  const message = opts.message ?? ''
  const versions = versionsIn(message, opts.pattern)
  const none = (notReleased?: string): VersionPlan => ({
    source: 'none',
    tag: shaTag(opts.sha),
    notReleased
  })
  if (versions.length === 0) return none()
  const named = versions.join(', ')
  if (opts.author && /\[bot\]$/.test(opts.author))
    return none(
      `The commit is by ${opts.author}, a bot account, so the version it names (${named}) is a mention, not a release.`
    )
  if (/^Revert "/.test(message))
    return none(`The commit is a revert, so the version it names (${named}) is not released again.`)
  if (/^\w+\((deps|deps-dev)\)!?:/.test(message))
    return none(
      `The commit is a dependency update, so the version it names (${named}) is a mention, not a release.`
    )
  if (versions.length > 1)
    return none(
      `The commit message names several versions (${named}), so none of them is released: write exactly one.`
    )
  const version = versions[0]!
  const problem = versionProblem(version)
  if (problem)
    throw new Error(
      `The version '${version}' found in the commit message cannot be used as a tag: ${problem}. Adjust version-pattern.`
    )
  return { version, source: 'commit', tag: toImageTag(version) }
}

export function shaTag(sha: string): string {
  return `sha-${sha.slice(0, 7)}`
}
