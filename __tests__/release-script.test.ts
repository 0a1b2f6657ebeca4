// scripts/release.sh on a scratch repository with a bare "origin": tags vX.Y.Z and moves vX only
// when the checks pass, never backwards, never for a pre-release.
import { execFileSync, spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'

const script = resolve('scripts/release.sh')
let dir: string
let repo: string
let origin: string

const git = (cwd: string, ...args: string[]) =>
  execFileSync('git', args, { cwd, encoding: 'utf8' }).trim()

function commit(version: string, changelog: string) {
  writeFileSync(join(repo, 'package.json'), JSON.stringify({ name: 'x', version }))
  writeFileSync(join(repo, 'CHANGELOG.md'), changelog)
  git(repo, 'add', '-A')
  git(repo, 'commit', '-qm', `release ${version}`)
  return git(repo, 'rev-parse', 'HEAD')
}

function release(version: string, checks = 'true') {
  const r = spawnSync('bash', [script, version], {
    cwd: repo,
    encoding: 'utf8',
    env: { ...process.env, RELEASE_CHECKS: checks, RELEASE_REMOTE: 'origin' }
  })
  return { code: r.status, out: r.stdout + r.stderr }
}

/** the commit a tag names in the bare origin, or '' */
const remoteTag = (tag: string) =>
  spawnSync('git', ['rev-parse', '-q', '--verify', `refs/tags/${tag}^{commit}`], {
    cwd: origin,
    encoding: 'utf8'
  }).stdout.trim()

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'bg-release-'))
  origin = join(dir, 'origin.git')
  repo = join(dir, 'work')
  git(dir, 'init', '-q', '--bare', origin)
  git(dir, 'clone', '-q', origin, repo)
  git(repo, 'config', 'user.email', 'ci@example.com')
  git(repo, 'config', 'user.name', 'ci')
  git(repo, 'symbolic-ref', 'HEAD', 'refs/heads/main')
})
afterEach(() => rmSync(dir, { recursive: true, force: true }))

const log = (...versions: string[]) =>
  `# Changelog\n\n${versions.map((v) => `## ${v}\n\n- changes of ${v}\n`).join('\n')}`

test('checks pass: vX.Y.Z is tagged with its CHANGELOG section, v1 moves to it, both pushed', () => {
  const first = commit('1.0.0', log('v1.0.0'))
  expect(release('v1.0.0')).toMatchObject({ code: 0 })
  expect(remoteTag('v1.0.0')).toBe(first)
  expect(remoteTag('v1')).toBe(first)
  expect(git(repo, 'tag', '-l', '--format=%(contents)', 'v1.0.0')).toContain('changes of v1.0.0')

  const second = commit('1.1.0', log('v1.1.0', 'v1.0.0'))
  expect(release('v1.1.0')).toMatchObject({ code: 0 })
  expect(remoteTag('v1.1.0')).toBe(second)
  expect(remoteTag('v1')).toBe(second)
  expect(remoteTag('v1.0.0')).toBe(first)
})

test('checks fail: no tag is made and v1 stays where it was', () => {
  const first = commit('1.0.0', log('v1.0.0'))
  expect(release('v1.0.0').code).toBe(0)
  commit('1.1.0', log('v1.1.0', 'v1.0.0'))
  const r = release('v1.1.0', 'echo unit tests failed >&2; exit 1')
  expect(r.code).toBe(1)
  expect(r.out).toContain('the checks failed; nothing was tagged')
  expect(git(repo, 'tag', '-l', 'v1.1.0')).toBe('')
  expect(remoteTag('v1.1.0')).toBe('')
  expect(remoteTag('v1')).toBe(first)
})

test('checks that change files (a stale dist/) tag nothing', () => {
  commit('1.0.0', log('v1.0.0'))
  const r = release('v1.0.0', 'echo rebuilt > dist.js')
  expect(r.code).toBe(1)
  expect(r.out).toContain('the checks changed files')
  expect(remoteTag('v1.0.0')).toBe('')
  expect(remoteTag('v1')).toBe('')
})

test('a pre-release is tagged, v1 is not moved', () => {
  const first = commit('1.0.0', log('v1.0.0'))
  release('v1.0.0')
  const rc = commit('1.1.0-rc.1', log('v1.1.0-rc.1', 'v1.0.0'))
  expect(release('v1.1.0-rc.1')).toMatchObject({ code: 0 })
  expect(remoteTag('v1.1.0-rc.1')).toBe(rc)
  expect(remoteTag('v1')).toBe(first)
})

test('a patch of an older line does not move v1 backwards', () => {
  commit('1.0.0', log('v1.0.0'))
  release('v1.0.0')
  const newer = commit('1.1.0', log('v1.1.0', 'v1.0.0'))
  release('v1.1.0')
  git(repo, 'checkout', '-q', '-b', 'v1.0.x', 'v1.0.0')
  const patch = commit('1.0.1', log('v1.0.1', 'v1.0.0'))
  const r = release('v1.0.1')
  expect(r).toMatchObject({ code: 0 })
  expect(r.out).toContain('v1.1.0 is newer than v1.0.1; v1 stays at v1.1.0')
  expect(remoteTag('v1.0.1')).toBe(patch)
  expect(remoteTag('v1')).toBe(newer)
})

test.each([
  ['1.0', log('v1.0'), 'give the version as vX.Y.Z'],
  ['v1.0.0', log('v0.9.0'), "CHANGELOG.md has no section '## v1.0.0'"]
])('refused before any check: %s', (version, changelog, message) => {
  commit('1.0.0', changelog)
  const r = release(version, 'echo CHECKS RAN')
  expect(r.code).toBe(1)
  expect(r.out).toContain(message)
  expect(r.out).not.toContain('CHECKS RAN')
  expect(git(repo, 'tag', '-l')).toBe('')
})

test('package.json must say the version, and the tree must be clean', () => {
  commit('0.9.0', log('v1.0.0'))
  expect(release('v1.0.0').out).toContain('package.json says version 0.9.0')
  commit('1.0.0', log('v1.0.0'))
  writeFileSync(join(repo, 'stray.txt'), 'x')
  expect(release('v1.0.0').out).toContain('not committed')
  expect(git(repo, 'tag', '-l')).toBe('')
})

test('a released version is never moved; a re-run at the same commit succeeds', () => {
  const first = commit('1.0.0', log('v1.0.0'))
  release('v1.0.0')
  expect(release('v1.0.0')).toMatchObject({ code: 0 })
  expect(remoteTag('v1')).toBe(first)
  commit('1.0.0', log('v1.0.0', 'v0.9.0'))
  const r = release('v1.0.0')
  expect(r.code).toBe(1)
  expect(r.out).toContain(`tag v1.0.0 exists already, at commit ${first.slice(0, 7)}`)
  expect(remoteTag('v1.0.0')).toBe(first)
})

test('a commit that is not on main is refused before any check runs, and nothing is tagged', () => {
  commit('1.0.0', log('v1.0.0'))
  git(repo, 'checkout', '-qb', 'feature')
  commit('1.1.0', log('v1.1.0', 'v1.0.0'))
  const r = release('v1.1.0', 'echo CHECKS RAN')
  expect(r.code).toBe(1)
  expect(r.out).toMatch(
    /release: commit [0-9a-f]{7} is not on main \(nor on v1\.1\.x\): a release is made from main/
  )
  expect(r.out).not.toContain('CHECKS RAN')
  expect(remoteTag('v1.1.0')).toBe('')
  expect(git(repo, 'tag', '-l')).toBe('')
  // merged into main, it is released
  git(repo, 'checkout', '-q', 'main')
  git(repo, 'merge', '-q', '--ff-only', 'feature')
  expect(release('v1.1.0')).toMatchObject({ code: 0 })
})

test('with RELEASE_TAGS_OUT the tags are made here and listed for the step that pushes, and nothing is pushed', () => {
  const first = commit('1.0.0', log('v1.0.0'))
  const out = join(dir, 'tags')
  const r = spawnSync('bash', [script, 'v1.0.0'], {
    cwd: repo,
    encoding: 'utf8',
    env: { ...process.env, RELEASE_CHECKS: 'true', RELEASE_TAGS_OUT: out }
  })
  expect(r.status).toBe(0)
  expect(readFileSync(out, 'utf8')).toBe('refs/tags/v1.0.0\n+refs/tags/v1\n')
  expect(git(repo, 'rev-parse', 'v1^{commit}')).toBe(first)
  expect(remoteTag('v1.0.0')).toBe('')
})
