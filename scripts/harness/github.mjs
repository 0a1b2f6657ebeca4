// A loopback stand-in for GitHub's release and deployment endpoints.
import { createServer } from 'node:http'
import { sleep } from './load.mjs'

/**
 * @typedef {object} ApiRequest
 * @property {string} method
 * @property {string} url
 * @property {Record<string, unknown>} body
 * @property {string} [auth]
 */

/** A loopback stand-in for GitHub's release endpoints, answering as GitHub does. */
export class FakeGitHub {
  /** @type {ApiRequest[]} */
  requests = []
  /** @type {{ id: number, tag_name: string, draft: boolean, html_url: string, name: string, target_commitish: string, prerelease: boolean }[]} */
  releases = []
  /** tags that exist in the repository: name -> commit (a published release makes its tag) */
  /** @type {Record<string, string>} */
  tags = {}
  /** @type {import('node:http').Server | undefined} */
  server = undefined
  url = ''
  /** deployment records, each with its statuses, as POSTed */
  /** @type {{ id: number, ref: string, environment: string, description: string, payload: Record<string, unknown>, statuses: Record<string, unknown>[] }[]} */
  deployments = []
  /** ms each answer waits, as a round trip to GitHub's API from a runner takes */
  latencyMs = 0
  /** how many of the next requests are answered 502, as GitHub does now and then */
  failNext = 0

  /** @returns {Promise<this>} */
  async start() {
    const server = createServer((req, res) => void this.handle(req, res))
    this.server = server
    await new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(undefined)))
    this.url = `http://127.0.0.1:${/** @type {import('node:net').AddressInfo} */ (server.address()).port}`
    return this
  }

  /** @returns {Promise<void>} */
  stop() {
    return new Promise((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()))
  }

  /**
   * A release as GitHub shows it: a draft has an `untagged-` URL and no tag yet.
   * @param {{ tag_name: string, target_commitish: string, draft?: boolean, prerelease?: boolean }} r
   */
  addRelease(r) {
    const id = this.releases.length + 1
    const release = {
      id,
      tag_name: r.tag_name,
      name: r.tag_name,
      target_commitish: r.target_commitish,
      draft: r.draft ?? false,
      prerelease: r.prerelease ?? false,
      html_url: ''
    }
    this.releases.push(release)
    this.setUrl(release)
    if (!release.draft) this.tags[release.tag_name] = release.target_commitish
    return release
  }

  /** @param {{ id: number, tag_name: string, draft: boolean, html_url: string }} r */
  setUrl(r) {
    r.html_url = r.draft
      ? `https://github.com/acme/shop/releases/tag/untagged-${r.id}`
      : `https://github.com/acme/shop/releases/tag/${r.tag_name}`
  }

  /**
   * @param {import('node:http').IncomingMessage} req
   * @param {import('node:http').ServerResponse} res
   */
  async handle(req, res) {
    let raw = ''
    for await (const chunk of req) raw += chunk
    if (this.latencyMs) await sleep(this.latencyMs)
    /** @type {Record<string, unknown>} */
    const body = raw ? JSON.parse(raw) : {}
    const url = (req.url ?? '').replace(/%2F/gi, '/')
    this.requests.push({ method: req.method ?? '', url, body, auth: req.headers.authorization })
    const send = (
      /** @type {number} */ status,
      /** @type {unknown} */ data,
      /** @type {Record<string, string>} */ headers = {}
    ) => {
      res.writeHead(status, { 'content-type': 'application/json', ...headers })
      res.end(JSON.stringify(data))
    }
    if (this.failNext > 0) {
      this.failNext--
      return send(502, { message: 'Server Error' })
    }
    const notFound = () => send(404, { message: 'Not Found', status: '404' })
    const deployments = /^\/repos\/[^/]+\/[^/]+\/deployments$/.exec(url)
    if (req.method === 'POST' && deployments) {
      // GitHub takes a branch, a tag or a commit; an unknown ref is 422
      const r = String(body.ref ?? '')
      if (!/^[0-9a-f]{40}$/.test(r) && !(r in this.tags) && r !== 'main')
        return send(422, { message: `No ref found for: ${r}`, status: '422' })
      const d = {
        id: this.deployments.length + 100,
        ref: r,
        environment: String(body.environment ?? 'production'),
        description: String(body.description ?? ''),
        payload: /** @type {Record<string, unknown>} */ (body.payload ?? {}),
        statuses: /** @type {Record<string, unknown>[]} */ ([])
      }
      this.deployments.push(d)
      return send(201, d)
    }
    const statuses = /^\/repos\/[^/]+\/[^/]+\/deployments\/(\d+)\/statuses$/.exec(url)
    if (req.method === 'POST' && statuses) {
      const d = this.deployments.find((x) => x.id === Number(statuses[1]))
      if (!d) return notFound()
      d.statuses.push(body)
      return send(201, { id: d.statuses.length, ...body })
    }
    const ref = /^\/repos\/[^/]+\/[^/]+\/git\/ref\/tags\/(.+)$/.exec(url)
    if (req.method === 'GET' && ref) {
      const commit = this.tags[decodeURIComponent(ref[1] ?? '')]
      return commit
        ? send(200, { ref: `refs/tags/${ref[1]}`, object: { type: 'commit', sha: commit } })
        : notFound()
    }
    const byId = /^\/repos\/[^/]+\/[^/]+\/releases\/(\d+)$/.exec(url)
    if (req.method === 'DELETE' && byId) {
      const i = this.releases.findIndex((x) => x.id === Number(byId[1]))
      if (i < 0) return notFound()
      this.releases.splice(i, 1)
      res.writeHead(204)
      return res.end()
    }
    if (req.method === 'PATCH' && byId) {
      const r = this.releases.find((x) => x.id === Number(byId[1]))
      if (!r) return notFound()
      if (body.draft === false && r.draft) {
        r.draft = false
        this.tags[r.tag_name] = r.target_commitish
        this.setUrl(r)
      }
      return send(200, r)
    }
    const list = /^\/repos\/[^/]+\/[^/]+\/releases(\?.*)?$/.exec(url)
    if (list) {
      if (req.method === 'GET') {
        const q = new URLSearchParams((list[1] ?? '').slice(1))
        const per = Number(q.get('per_page') ?? 30)
        const page = Number(q.get('page') ?? 1)
        // GitHub names the next page in a Link header while there is one
        const next = new URL(`${this.url}${url}`)
        next.searchParams.set('page', String(page + 1))
        const more = page * per < this.releases.length
        return send(
          200,
          this.releases.slice((page - 1) * per, page * per),
          more ? { link: `<${next}>; rel="next"` } : {}
        )
      }
      if (req.method === 'POST') {
        if (this.releases.some((x) => x.tag_name === body.tag_name))
          return send(422, {
            message: 'Validation Failed',
            errors: [{ resource: 'Release', code: 'already_exists', field: 'tag_name' }],
            status: '422'
          })
        return send(
          201,
          this.addRelease({
            tag_name: String(body.tag_name),
            target_commitish: String(body.target_commitish),
            draft: body.draft === true,
            prerelease: body.prerelease === true
          })
        )
      }
    }
    notFound()
  }
}
