import { getOctokit } from '@actions/github'
import { retry } from '@octokit/plugin-retry'

export interface Release {
  id: number
  tag_name: string
  html_url: string
  draft?: boolean
  /** the commit (or branch) the release's tag is made at when it is published */
  target_commitish?: string
}

export interface CreateReleaseParams {
  tag_name: string
  name: string
  target_commitish: string
  generate_release_notes: boolean
  prerelease: boolean
  draft: boolean
}

/** The release calls we need; the real one wraps Octokit, tests use a recording fake. */
export interface ReleasesApi {
  /** Every release, drafts included. */
  list(): Promise<Release[]>
  /** The commit a tag points at (annotated tags followed), or undefined when there is no tag. */
  tagCommit(tag: string): Promise<string | undefined>
  /** Returns 'already_exists' when GitHub answers 422 already_exists. */
  create(params: CreateReleaseParams): Promise<Release | 'already_exists'>
  /** Publish a draft (that creates its tag). */
  publish(id: number): Promise<Release>
  /** Delete a draft this run created, when its image was never pushed. */
  remove(id: number): Promise<void>
}

/**
 * Where `tag` is released already for a commit other than `sha` (a tag, a published release or a
 * draft), described for a notice; undefined when it is not, or only for this commit.
 */
export async function releasedElsewhere(
  api: ReleasesApi,
  tag: string,
  sha: string
): Promise<string | undefined> {
  const [commit, releases] = await Promise.all([api.tagCommit(tag), api.list()])
  if (commit && commit !== sha) return `tag ${tag} exists at commit ${commit.slice(0, 7)}`
  const release = releases.find((r) => r.tag_name === tag)
  if (!release || commit === sha) return undefined
  if (release.target_commitish === sha) return undefined
  return `${release.draft ? 'draft release' : 'release'} ${tag} exists for ${release.target_commitish ? `commit ${release.target_commitish.slice(0, 7)}` : 'another commit'} (${release.html_url})`
}

/**
 * The release for `tag` at this commit: the one a previous run made (a draft, or published), or a
 * new draft. It is published only after the new version serves.
 */
export async function draftRelease(
  api: ReleasesApi,
  opts: { tag: string; sha: string; prerelease: boolean }
): Promise<{ release: Release; created: boolean }> {
  const find = async () => (await api.list()).find((r) => r.tag_name === opts.tag)
  const existing = await find()
  if (existing) return { release: await ours(api, existing, opts), created: false }
  const made = await api.create({
    tag_name: opts.tag,
    name: opts.tag,
    target_commitish: opts.sha,
    generate_release_notes: true,
    prerelease: opts.prerelease,
    draft: true
  })
  if (made !== 'already_exists') return { release: made, created: true }
  // created by a concurrent run between our two calls
  const found = await find()
  if (!found)
    throw new Error(
      `GitHub says release ${opts.tag} already exists, but it cannot be read with this token.`
    )
  return { release: await ours(api, found, opts), created: false }
}

/**
 * A release found for the tag is taken over only when it is this commit's: a draft made for this
 * commit, or a published one whose tag is at it. Another commit's (a run of another commit that
 * names the same version, moments before) stops this run before it pushes the version's tag.
 */
async function ours(
  api: ReleasesApi,
  release: Release,
  opts: { tag: string; sha: string }
): Promise<Release> {
  const commit = release.draft ? release.target_commitish : await api.tagCommit(opts.tag)
  if (commit && /^[0-9a-f]{7,40}$/.test(commit) && commit !== opts.sha)
    throw new Error(
      `Release ${opts.tag} was just made for commit ${commit.slice(0, 7)} (${release.html_url}), not for this commit ${opts.sha.slice(0, 7)}: two commits name the same version. This run stops before it pushes ${opts.tag}. Give this commit its own version, or delete that draft if it is a mistake.`
    )
  return release
}

function status(e: unknown): number | undefined {
  return (e as { status?: number }).status
}

function permissionHint(e: unknown, what: string): Error | undefined {
  if (status(e) === 403 || status(e) === 404)
    return new Error(
      `Cannot ${what} (HTTP ${status(e)}). Give the workflow 'permissions: contents: write', or set create-release: false.`
    )
  return undefined
}

/** Octokit with retries (network errors, 5xx, 429), for releases and deployment records alike. */
export function githubClient(
  token: string,
  opts: { retryBaseMs?: number; baseUrl?: string } = {}
): ReturnType<typeof getOctokit> {
  return getOctokit(
    token,
    {
      retry: { retryAfterBaseValue: opts.retryBaseMs ?? 1000 },
      ...(opts.baseUrl ? { baseUrl: opts.baseUrl } : {})
    },
    retry
  )
}

/**
 * Releases through Octokit: every list is read page by page, and a request that meets a network
 * error or a 5xx/429 is retried (3 times, waiting 1, 4, 9 s; `retryBaseMs` scales that in tests).
 * A retried create that had in fact succeeded answers 422 already_exists, which draftRelease
 * handles.
 */
export function githubReleases(
  token: string,
  owner: string,
  repo: string,
  opts: { retryBaseMs?: number; baseUrl?: string } = {}
): ReleasesApi {
  const octokit = githubClient(token, opts)
  return {
    async list() {
      return await octokit.paginate(octokit.rest.repos.listReleases, { owner, repo, per_page: 100 })
    },
    async tagCommit(tag) {
      let ref
      try {
        ref = (await octokit.rest.git.getRef({ owner, repo, ref: `tags/${tag}` })).data
      } catch (e) {
        if (status(e) === 404) return undefined
        throw e
      }
      let object = ref.object
      // an annotated tag points at a tag object, which points at the commit
      for (let i = 0; object.type === 'tag' && i < 5; i++)
        object = (await octokit.rest.git.getTag({ owner, repo, tag_sha: object.sha })).data.object
      return object.sha
    },
    async create(params) {
      try {
        return (await octokit.rest.repos.createRelease({ owner, repo, ...params })).data
      } catch (e) {
        const errors = (e as { response?: { data?: { errors?: { code?: string }[] } } }).response
          ?.data?.errors
        if (status(e) === 422 && errors?.some((x) => x.code === 'already_exists'))
          return 'already_exists'
        throw permissionHint(e, `create release ${params.tag_name}`) ?? e
      }
    },
    async publish(id) {
      try {
        return (
          await octokit.rest.repos.updateRelease({ owner, repo, release_id: id, draft: false })
        ).data
      } catch (e) {
        throw permissionHint(e, `publish release ${id}`) ?? e
      }
    },
    async remove(id) {
      try {
        await octokit.rest.repos.deleteRelease({ owner, repo, release_id: id })
      } catch (e) {
        throw permissionHint(e, `delete draft release ${id}`) ?? e
      }
    }
  }
}
