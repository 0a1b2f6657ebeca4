// The release calls against a loopback GitHub API (scripts/harness/index.mjs): Octokit as the action
// runs it, with its retries and pagination.
import { githubReleases } from '../src/release.js'
import { FakeGitHub } from '../scripts/harness/index.mjs'

let gh: FakeGitHub
beforeEach(async () => {
  gh = await new FakeGitHub().start()
})
afterEach(() => gh.stop())

test('every release is read, page by page, past the first 100', async () => {
  for (let i = 0; i < 250; i++) gh.addRelease({ tag_name: `v0.0.${i}`, target_commitish: 'abc' })
  const all = await githubReleases('t', 'acme', 'shop', { retryBaseMs: 1, baseUrl: gh.url }).list()
  expect(all.map((r) => r.tag_name)).toEqual(gh.releases.map((r) => r.tag_name))
  expect(gh.requests.filter((r) => r.method === 'GET')).toHaveLength(3)
})

test('a 502 from GitHub is retried, and the call succeeds', async () => {
  gh.addRelease({ tag_name: 'v1.0.0', target_commitish: 'abc' })
  gh.failNext = 2
  const all = await githubReleases('t', 'acme', 'shop', { retryBaseMs: 1, baseUrl: gh.url }).list()
  expect(all.map((r) => r.tag_name)).toEqual(['v1.0.0'])
  expect(gh.requests).toHaveLength(3)
})

test('a create that keeps failing gives up after 3 retries with GitHub’s answer', async () => {
  gh.failNext = 10
  const api = githubReleases('t', 'acme', 'shop', { retryBaseMs: 1, baseUrl: gh.url })
  await expect(
    api.create({
      tag_name: 'v1.0.0',
      name: 'v1.0.0',
      target_commitish: 'abc',
      generate_release_notes: true,
      prerelease: false,
      draft: true
    })
  ).rejects.toThrow(/Server Error/)
  expect(gh.requests).toHaveLength(4)
  expect(gh.releases).toHaveLength(0)
})

test('a 404 is not retried: the permission hint comes at once', async () => {
  const api = githubReleases('t', 'acme', 'shop', { retryBaseMs: 1, baseUrl: gh.url })
  await expect(api.publish(7)).rejects.toThrow(/permissions: contents: write/)
  expect(gh.requests).toHaveLength(1)
})
