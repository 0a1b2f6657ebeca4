import {
  draftRelease,
  type CreateReleaseParams,
  type Release,
  type ReleasesApi
} from '../src/release.js'

class FakeReleases implements ReleasesApi {
  created: CreateReleaseParams[] = []
  constructor(
    public releases: Release[] = [],
    private readonly drafts: Release[] = []
  ) {}
  async getByTag(tag: string) {
    return this.releases.find((r) => r.tag_name === tag)
  }
  async create(params: CreateReleaseParams) {
    this.created.push(params)
    if ([...this.releases, ...this.drafts].some((r) => r.tag_name === params.tag_name))
      return 'already_exists' as const
    const r = {
      id: 1,
      tag_name: params.tag_name,
      html_url: `https://x/releases/${params.tag_name}`
    }
    this.releases.push(r)
    return r
  }
  async list() {
    return [...this.releases, ...this.drafts]
  }
  async tagCommit() {
    return undefined
  }
  published: number[] = []
  async publish(id: number) {
    this.published.push(id)
    return { id, tag_name: 'x', html_url: 'published' }
  }
  removed: number[] = []
  async remove(id: number) {
    this.removed.push(id)
  }
}

test('creates a missing release as a draft with generated notes at the commit', async () => {
  const api = new FakeReleases()
  const r = await draftRelease(api, { tag: 'v1.4.0', sha: 'abc', prerelease: false })
  expect(r.created).toBe(true)
  expect(api.created).toEqual([
    {
      tag_name: 'v1.4.0',
      name: 'v1.4.0',
      target_commitish: 'abc',
      generate_release_notes: true,
      prerelease: false,
      draft: true
    }
  ])
})

test('a re-run finds the existing release and creates nothing', async () => {
  const api = new FakeReleases([{ id: 7, tag_name: 'v1.4.0', html_url: 'u' }])
  expect(await draftRelease(api, { tag: 'v1.4.0', sha: 'abc', prerelease: false })).toEqual({
    release: { id: 7, tag_name: 'v1.4.0', html_url: 'u' },
    created: false
  })
  expect(api.created).toEqual([])
})

test('a draft with the tag (a failed run left it) is found and reused', async () => {
  const api = new FakeReleases([], [{ id: 9, tag_name: 'v2.0.0-rc.1', html_url: 'd', draft: true }])
  const r = await draftRelease(api, { tag: 'v2.0.0-rc.1', sha: 'abc', prerelease: true })
  expect(r).toEqual({
    release: { id: 9, tag_name: 'v2.0.0-rc.1', html_url: 'd', draft: true },
    created: false
  })
  expect(api.created).toEqual([])
})

test('a draft made moments ago for another commit (two commits naming one version) is refused, not taken over', async () => {
  const other = 'f00dfeed'.repeat(5)
  const mine = 'abc0123'.padEnd(40, '0')
  // found at once
  const api = new FakeReleases(
    [],
    [{ id: 3, tag_name: 'v3.0.0', html_url: 'd', draft: true, target_commitish: other }]
  )
  await expect(draftRelease(api, { tag: 'v3.0.0', sha: mine, prerelease: false })).rejects.toThrow(
    /^Release v3\.0\.0 was just made for commit f00dfee \(d\), not for this commit abc0123: two commits name the same version\. This run stops before it pushes v3\.0\.0/
  )
  // and when the create races with it (422 already_exists)
  const racing = new FakeReleases([], [])
  racing.list = async () =>
    racing.created.length === 0
      ? []
      : [{ id: 4, tag_name: 'v3.0.0', html_url: 'd', draft: true, target_commitish: other }]
  racing.create = async (p) => {
    racing.created.push(p)
    return 'already_exists' as const
  }
  await expect(
    draftRelease(racing, { tag: 'v3.0.0', sha: mine, prerelease: false })
  ).rejects.toThrow(/two commits name the same version/)
  // this commit's own draft (a re-run) is reused
  const rerun = new FakeReleases(
    [],
    [{ id: 5, tag_name: 'v3.0.0', html_url: 'd', draft: true, target_commitish: mine }]
  )
  expect(
    (await draftRelease(rerun, { tag: 'v3.0.0', sha: mine, prerelease: false })).release.id
  ).toBe(5)
})
