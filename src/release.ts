import { getOctokit } from '@actions/github'

export interface Release {
  id: number
  tag_name: string
  html_url: string
  draft?: boolean
}

export interface CreateReleaseParams {
  tag_name: string
  name: string
  target_commitish: string
  generate_release_notes: boolean
  prerelease: boolean
}

/** The three release calls we need; the real one wraps Octokit, tests use a recording fake. */
export interface ReleasesApi {
  getByTag(tag: string): Promise<Release | undefined>
  /** Returns 'already_exists' when GitHub answers 422 already_exists. */
  create(params: CreateReleaseParams): Promise<Release | 'already_exists'>
  list(): Promise<Release[]>
}

/** Get the release for `tag`, creating it when missing. A re-run finds the one it made before. */
export async function ensureRelease(
  api: ReleasesApi,
  opts: { tag: string; sha: string; prerelease: boolean }
): Promise<{ release: Release; created: boolean }> {
  const existing = await api.getByTag(opts.tag)
  if (existing) return { release: existing, created: false }
  const made = await api.create({
    tag_name: opts.tag,
    name: opts.tag,
    target_commitish: opts.sha,
    generate_release_notes: true,
    prerelease: opts.prerelease
  })
  if (made !== 'already_exists') return { release: made, created: true }
  // getReleaseByTag does not see drafts; a draft with this tag, or a release created by a
  // concurrent run between our two calls, is found in the list.
  const found =
    (await api.list()).find((r) => r.tag_name === opts.tag) ?? (await api.getByTag(opts.tag))
  if (!found)
    throw new Error(
      `GitHub says release ${opts.tag} already exists, but it cannot be read with this token.`
    )
  return { release: found, created: false }
}

function status(e: unknown): number | undefined {
  return (e as { status?: number }).status
}

export function githubReleases(token: string, owner: string, repo: string): ReleasesApi {
  const octokit = getOctokit(token)
  return {
    async getByTag(tag) {
      try {
        return (await octokit.rest.repos.getReleaseByTag({ owner, repo, tag })).data
      } catch (e) {
        if (status(e) === 404) return undefined
        throw e
      }
    },
    async create(params) {
      try {
        return (await octokit.rest.repos.createRelease({ owner, repo, ...params })).data
      } catch (e) {
        const errors = (e as { response?: { data?: { errors?: { code?: string }[] } } }).response
          ?.data?.errors
        if (status(e) === 422 && errors?.some((x) => x.code === 'already_exists'))
          return 'already_exists'
        if (status(e) === 403 || status(e) === 404)
          throw new Error(
            `Cannot create release ${params.tag_name} (HTTP ${status(e)}). Give the workflow 'permissions: contents: write', or set create-release: false.`
          )
        throw e
      }
    },
    async list() {
      return (await octokit.rest.repos.listReleases({ owner, repo, per_page: 100 })).data
    }
  }
}
