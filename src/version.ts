// Semver with a leading `v`, as people write it in commit messages: v1.2.3, v1.2.3-rc.1,
// v1.2.3+build.5. Not preceded by a word character or dot (so `xv1.2.3` and `1.v1.2.3` do
// not count) and not followed by more version-like text (so `v1.2.3.4` and `v1.2.34x` do not).
const NUM = '(?:0|[1-9]\\d*)'
const IDENT = '[0-9A-Za-z-]+'
export const DEFAULT_VERSION_PATTERN = new RegExp(
  `(?<![\\w.])v${NUM}\\.${NUM}\\.${NUM}(?:-${IDENT}(?:\\.${IDENT})*)?(?:\\+${IDENT}(?:\\.${IDENT})*)?(?![\\w+-]|\\.\\w)`
)

/** The first version in `message`: the first capture group of `pattern` if it has one, else the match. */
export function parseVersion(
  message: string,
  pattern: RegExp = DEFAULT_VERSION_PATTERN
): string | undefined {
  const match = pattern.exec(message)
  if (!match) return undefined
  const found = match[1] ?? match[0]
  return found.trim() || undefined
}

/** A pre-release has a `-` part before any `+build` part: v1.2.3-rc.1. */
export function isPrerelease(version: string): boolean {
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
  /** The image tags to push, most specific first. */
  tags: string[]
}

/** Decide the version and image tags for a run. */
export function planVersion(opts: {
  explicit?: string
  message?: string
  pattern?: RegExp
  sha: string
}): VersionPlan {
  if (opts.explicit) return withTags(opts.explicit, 'input')
  const found = opts.message ? parseVersion(opts.message, opts.pattern) : undefined
  if (found) {
    const problem = versionProblem(found)
    if (problem)
      throw new Error(
        `The version '${found}' found in the commit message cannot be used as a tag: ${problem}. Adjust version-pattern.`
      )
    return withTags(found, 'commit')
  }
  return { source: 'none', tags: [`sha-${opts.sha.slice(0, 7)}`, 'latest'] }
}

function withTags(version: string, source: 'input' | 'commit'): VersionPlan {
  return { version, source, tags: [toImageTag(version), 'latest'] }
}
