import {
  isPrerelease,
  parseVersion,
  planVersion,
  toImageTag,
  versionProblem
} from '../src/version.js'

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
      tags: ['v9.9.9', 'latest']
    })
  })
  test('version from the message', () => {
    expect(planVersion({ message: 'ship v1.4.0', sha })).toEqual({
      version: 'v1.4.0',
      source: 'commit',
      tags: ['v1.4.0', 'latest']
    })
  })
  test('no version: sha- tag and latest', () => {
    expect(planVersion({ message: 'typo fix', sha })).toEqual({
      source: 'none',
      tags: ['sha-abcdef0', 'latest']
    })
  })
  test('a custom pattern that finds an unusable tag is an error naming version-pattern', () => {
    expect(() => planVersion({ message: 'v: -bad', pattern: /v: (\S+)/, sha })).toThrow(
      /version-pattern/
    )
  })
})
