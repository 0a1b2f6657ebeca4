import {
  isPrerelease,
  parseVersion,
  planVersion,
  toImageTag,
  versionProblem,
  versionsIn
} from '../src/version.js'
import { releasedElsewhere, type ReleasesApi } from '../src/release.js'

describe('parseVersion', () => {
  test.each([
    ['Release v1.4.0', 'v1.4.0'],
    ['v1.2.3-rc.1: first candidate', 'v1.2.3-rc.1'],
    ['build v1.2.3+build.5 done', 'v1.2.3+build.5'],
    ['v1.2.3-beta.2+exp.sha.5114f85', 'v1.2.3-beta.2+exp.sha.5114f85'],
    ['bump v2.0.0 (was v1.9.9)', 'v2.0.0'],
    ['fix: thing\n\nReleases v0.10.1.', 'v0.10.1'],
    ['(v3.1.4)', 'v3.1.4'],
    ['merge: v1.0.0, v1.0.1', 'v1.0.0'],
    ['v10.20.30', 'v10.20.30']
  ])('%j -> %s', (message, expected) => {
    expect(parseVersion(message)).toBe(expected)
  })

  test.each([
    ['no version here'],
    ['v1.2 is not semver'],
    ['1.2.3 has no v'],
    ['v1.2.3.4 has four parts'],
    ['xv1.2.3 is glued to a word'],
    ['v01.2.3 has a leading zero'],
    ['see 2.v1.2.3'],
    ['v1.2.x'],
    ['']
  ])('%j -> none', (message) => {
    expect(parseVersion(message)).toBeUndefined()
  })

  test('a custom pattern uses its first capture group', () => {
    expect(parseVersion('release: 2024.11.3 [ship]', /release: (\d+\.\d+\.\d+)/)).toBe('2024.11.3')
    expect(parseVersion('Version-7', /Version-\d+/)).toBe('Version-7')
  })
})

test.each([
  ['v1.2.3', false],
  ['v1.2.3-rc.1', true],
  ['v1.2.3+build-5', false],
  ['v1.2.3-alpha+b', true]
])('isPrerelease(%s) = %s', (v, expected) => {
  expect(isPrerelease(v)).toBe(expected)
})

test('build metadata becomes _ in the image tag', () => {
  expect(toImageTag('v1.2.3+build.5')).toBe('v1.2.3_build.5')
})

test.each(['v1.2.3', 'v1.2.3+b.1', '2024.01', 'release_7'])('versionProblem(%s) = none', (v) => {
  expect(versionProblem(v)).toBeUndefined()
})
test.each(['-v1', '.v1', 'v 1', 'v1;rm', 'a'.repeat(129), '$(id)'])(
  'versionProblem(%s) explains',
  (v) => {
    expect(versionProblem(v)).toMatch(/expected a version/)
  }
)

describe('planVersion', () => {
  const sha = 'abcdef0123456789abcdef0123456789abcdef01'
  test('explicit version wins over the message', () => {
    expect(planVersion({ explicit: 'v9.9.9', message: 'v1.0.0', sha })).toEqual({
      version: 'v9.9.9',
      source: 'input',
      tag: 'v9.9.9'
    })
  })
  test('explicit version wins over a bot author too', () => {
    expect(
      planVersion({ explicit: 'v9.9.9', message: 'x', author: 'dependabot[bot]', sha }).version
    ).toBe('v9.9.9')
  })
  test('version from the message', () => {
    expect(planVersion({ message: 'ship v1.4.0', sha })).toEqual({
      version: 'v1.4.0',
      source: 'commit',
      tag: 'v1.4.0'
    })
  })
  test('no version: the sha- tag', () => {
    expect(planVersion({ message: 'typo fix', sha })).toEqual({
      source: 'none',
      tag: 'sha-abcdef0'
    })
  })
  test('a custom pattern that finds an unusable tag is an error naming version-pattern', () => {
    expect(() => planVersion({ message: 'v: -bad', pattern: /v: (\S+)/, sha })).toThrow(
      /version-pattern/
    )
  })
})

describe('versionsIn', () => {
  test.each([
    ['Bump actions/checkout from v4.1.0 to v4.2.0', ['v4.1.0', 'v4.2.0']],
    ['release v1.4.0\n\nRelease v1.4.0', ['v1.4.0']],
    ['v1.2.3 and v1.2.3+build.1', ['v1.2.3', 'v1.2.3+build.1']],
    ['nothing', []]
  ])('%j -> %j', (message, expected) => {
    expect(versionsIn(message)).toEqual(expected)
  })
})

/**
 * Real commit messages, as a new user writes them and as bots do, against a repository that has
 * released v1.3.0 and v1.4.0 from other commits: what each one releases.
 */
describe('what a commit releases, against a release list', () => {
  const sha = 'c0ffee0000000000000000000000000000000000'
  const releases: ReleasesApi = {
    list: async () => [
      { id: 1, tag_name: 'v1.3.0', html_url: 'https://x/v1.3.0', target_commitish: 'main' },
      { id: 2, tag_name: 'v1.4.0', html_url: 'https://x/v1.4.0', target_commitish: 'main' },
      {
        id: 3,
        tag_name: 'v1.5.0',
        html_url: 'https://x/untagged-1',
        draft: true,
        target_commitish: 'feedbeef00000000000000000000000000000000'
      }
    ],
    tagCommit: async (tag) =>
      ({ 'v1.3.0': 'aaaa000', 'v1.4.0': 'bbbb000' })[tag] as string | undefined,
    create: async () => {
      throw new Error('not called')
    },
    publish: async () => {
      throw new Error('not called')
    },
    remove: async () => {
      throw new Error('not called')
    }
  }
  async function releasedAs(message: string, author = 'Mona Lisa'): Promise<string> {
    const plan = planVersion({ message, author, sha })
    if (!plan.version) return plan.tag
    return (await releasedElsewhere(releases, plan.version, sha)) ? 'sha-c0ffee0' : plan.version
  }
  test.each([
    ['Bump actions/checkout from v4.1.0 to v4.2.0', 'dependabot[bot]', 'sha-c0ffee0'],
    ['Bump actions/checkout from v4.1.0 to v4.2.0', 'Mona Lisa', 'sha-c0ffee0'],
    ['chore(deps): update dependency node to v20.11.1', 'renovate[bot]', 'sha-c0ffee0'],
    ['chore(deps): update dependency node to v20.11.1', 'Mona Lisa', 'sha-c0ffee0'],
    ['Revert "Release v1.4.0"\n\nThis reverts commit bbbb000.', 'Mona Lisa', 'sha-c0ffee0'],
    ['fix: crash introduced in v1.3.0', 'Mona Lisa', 'sha-c0ffee0'],
    ['Merge pull request #12 from acme/release-v1.2.0', 'Mona Lisa', 'v1.2.0'],
    ['release v1.4.0', 'Mona Lisa', 'sha-c0ffee0'],
    ['release v1.4.1', 'Mona Lisa', 'v1.4.1'],
    ['feat: checkout flow v1.4.0', 'Mona Lisa', 'sha-c0ffee0'],
    ['feat: checkout flow v1.6.0', 'Mona Lisa', 'v1.6.0'],
    ['v2.0.0-rc.1', 'Mona Lisa', 'v2.0.0-rc.1'],
    ['release v1.5.0 (its draft is for another commit)', 'Mona Lisa', 'sha-c0ffee0'],
    ['typo fix', 'Mona Lisa', 'sha-c0ffee0']
  ])('%j by %s -> %s', async (message, author, expected) => {
    expect(await releasedAs(message, author)).toBe(expected)
  })

  test('each skipped release says why', () => {
    expect(
      planVersion({ message: 'x v1.0.0', author: 'dependabot[bot]', sha }).notReleased
    ).toMatch(/dependabot\[bot\], a bot account/)
    expect(planVersion({ message: 'from v1.0.0 to v1.1.0', sha }).notReleased).toMatch(
      /several versions \(v1\.0\.0, v1\.1\.0\)/
    )
    expect(planVersion({ message: 'Revert "v1.0.0"', sha }).notReleased).toMatch(/revert/)
  })

  test('the same commit finds its own tag, release or draft: a re-run is not a second release', async () => {
    expect(await releasedElsewhere(releases, 'v1.4.0', 'bbbb000')).toBeUndefined()
    expect(
      await releasedElsewhere(releases, 'v1.5.0', 'feedbeef00000000000000000000000000000000')
    ).toBeUndefined()
    expect(await releasedElsewhere(releases, 'v1.4.0', sha)).toMatch(
      /tag v1\.4\.0 exists at commit bbbb000/
    )
  })
})
