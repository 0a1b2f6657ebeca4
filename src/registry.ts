import { execFileSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { homedir } from 'node:os'
import path from 'node:path'
// The registry's HTTP API (Docker Registry v2 / OCI distribution), for the two things the docker
// CLI cannot do without pulling: read an image's labels, and point one tag at another tag's
// manifest (moving `latest` after the switch, and back on a rollback) with the same digest.

export interface Registry {
  /** The labels of repository:tag, or undefined when the tag does not exist. */
  labels(tag: string): Promise<Record<string, string> | undefined>
  /**
   * The digest of the manifest that `reference` names (a tag, or a sha256: digest, which is then
   * checked to be there), or undefined when the registry does not have it.
   */
  digest(reference: string): Promise<string | undefined>
  /** Make `to` name the same manifest as `from` (a tag or a digest). Returns its digest. */
  retag(from: string, to: string): Promise<string | undefined>
}

export interface Credentials {
  username?: string
  password?: string
}

const MANIFEST_TYPES = [
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json'
]

export class RegistryError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'RegistryError'
  }
}

/** Where the API of `registry` answers: plain HTTP for loopback (as Docker does), else HTTPS. */
export function registryBaseUrl(registry: string): string {
  const host = registry === 'docker.io' ? 'registry-1.docker.io' : registry
  const name = host.replace(/:\d+$/, '').replace(/^\[|\]$/g, '')
  const loopback = name === 'localhost' || /^127\./.test(name) || name === '::1'
  return `${loopback ? 'http' : 'https'}://${host}`
}

/**
 * Where the registry's 401 says to get a token, which receives the credential: only over HTTPS,
 * or plain HTTP on loopback (as the registry itself is reached). A registry answer cannot send it
 * to a plain-text address elsewhere.
 */
export function tokenRealm(realm: string, registry: string): URL {
  let url: URL
  try {
    url = new URL(realm)
  } catch {
    throw new RegistryError(
      `${registry} named a token service that is not a URL: ${JSON.stringify(realm.slice(0, 200))}`
    )
  }
  const name = url.hostname.replace(/^\[|\]$/g, '')
  const loopback = name === 'localhost' || /^127\./.test(name) || name === '::1'
  if (url.protocol === 'https:' || (url.protocol === 'http:' && loopback)) return url
  throw new RegistryError(
    `${registry} asked for its token from ${url.protocol}//${url.host}, which is not HTTPS: the credential is not sent there. A registry's token service must use HTTPS (plain HTTP only on loopback).`
  )
}

/** The repository path inside the registry: `image` without its registry host. */
export function repositoryPath(image: string, registry: string): string {
  const path = image.startsWith(`${registry}/`) ? image.slice(registry.length + 1) : image
  return registry === 'docker.io' && !path.includes('/') ? `library/${path}` : path
}

interface Challenge {
  scheme: string
  params: Record<string, string>
}

export function parseChallenge(header: string | null): Challenge | undefined {
  if (!header) return undefined
  const m = /^(\w+)\s*(.*)$/.exec(header.trim())
  if (!m) return undefined
  const params: Record<string, string> = {}
  for (const p of m[2]!.matchAll(/(\w+)="([^"]*)"/g)) params[p[1]!.toLowerCase()] = p[2]!
  return { scheme: m[1]!.toLowerCase(), params }
}

export function registryClient(
  image: string,
  registry: string,
  creds: Credentials = {},
  fetchImpl: typeof fetch = fetch
): Registry {
  const base = `${registryBaseUrl(registry)}/v2/${repositoryPath(image, registry)}`
  const basic =
    creds.username && creds.password
      ? `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString('base64')}`
      : undefined
  let authorization: string | undefined

  /** A request, authenticated on demand (the registry's 401 says how). */
  async function call(path: string, init: RequestInit = {}, push = false): Promise<Response> {
    const send = () =>
      fetchImpl(`${base}${path}`, {
        ...init,
        headers: {
          ...(init.headers as Record<string, string>),
          ...(authorization ? { authorization } : {})
        }
      })
    let res = await send()
    if (res.status !== 401) return res
    const challenge = parseChallenge(res.headers.get('www-authenticate'))
    if (challenge?.scheme === 'basic' && basic) authorization = basic
    else if (challenge?.scheme === 'bearer' && challenge.params.realm) {
      const url = tokenRealm(challenge.params.realm, registry)
      if (challenge.params.service) url.searchParams.set('service', challenge.params.service)
      const scope = `repository:${repositoryPath(image, registry)}:${push ? 'pull,push' : 'pull'}`
      url.searchParams.set('scope', scope)
      const t = await fetchImpl(url, { headers: basic ? { authorization: basic } : {} })
      if (!t.ok)
        throw new RegistryError(
          `${registry} refused a token for ${scope} (HTTP ${t.status}): check registry-username and registry-password`
        )
      const body = (await t.json()) as { token?: string; access_token?: string }
      authorization = `Bearer ${body.token ?? body.access_token ?? ''}`
    } else return res
    res = await send()
    return res
  }

  async function manifest(
    ref: string
  ): Promise<{ body: Buffer; type: string; digest?: string } | undefined> {
    const res = await call(`/manifests/${ref}`, { headers: { accept: MANIFEST_TYPES.join(', ') } })
    if (res.status === 404) return undefined
    if (!res.ok)
      throw new RegistryError(
        `reading ${image}:${ref} from ${registry} failed (HTTP ${res.status})`
      )
    return {
      body: Buffer.from(await res.arrayBuffer()),
      type: res.headers.get('content-type') ?? MANIFEST_TYPES[3]!,
      digest: res.headers.get('docker-content-digest') ?? undefined
    }
  }

  return {
    async digest(reference) {
      const m = await manifest(reference)
      if (!m) return undefined
      return m.digest ?? `sha256:${createHash('sha256').update(m.body).digest('hex')}`
    },

    async labels(tag) {
      let m = await manifest(tag)
      if (!m) return undefined
      let json = JSON.parse(m.body.toString('utf8')) as {
        manifests?: { digest: string; platform?: { os?: string } }[]
        config?: { digest: string }
      }
      if (json.manifests) {
        // an index: the image manifests share the labels; attestations have platform unknown
        const first = json.manifests.find((x) => x.platform?.os !== 'unknown') ?? json.manifests[0]
        if (!first) return {}
        m = await manifest(first.digest)
        if (!m) return {}
        json = JSON.parse(m.body.toString('utf8')) as typeof json
      }
      if (!json.config) return {}
      const res = await call(`/blobs/${json.config.digest}`)
      if (!res.ok)
        throw new RegistryError(
          `reading the configuration of ${image}:${tag} from ${registry} failed (HTTP ${res.status})`
        )
      const config = (await res.json()) as { config?: { Labels?: Record<string, string> | null } }
      return config.config?.Labels ?? {}
    },

    async retag(from, to) {
      const m = await manifest(from)
      if (!m) throw new RegistryError(`${image}:${from} is not in ${registry}`)
      const res = await call(
        `/manifests/${to}`,
        { method: 'PUT', headers: { 'content-type': m.type }, body: new Uint8Array(m.body) },
        true
      )
      if (!res.ok)
        throw new RegistryError(
          `pointing ${image}:${to} at ${from} in ${registry} failed (HTTP ${res.status}): the registry credential needs push access`
        )
      return res.headers.get('docker-content-digest') ?? m.digest
    }
  }
}

/**
 * The credential for the registry API on the runner: the action's inputs, else what `docker login`
 * (or docker/login-action) stored in the runner's Docker config for that registry: an `auths`
 * entry, or the credential helper it names (`credHelpers` for that registry, else `credsStore`),
 * as the docker CLI asks it (`docker-credential-NAME get`, the registry on stdin).
 */
export function registryCredentials(
  registry: string,
  inputs: { registryUsername?: string; registryPassword?: string },
  env: NodeJS.ProcessEnv = process.env
): Credentials {
  if (inputs.registryUsername && inputs.registryPassword)
    return { username: inputs.registryUsername, password: inputs.registryPassword }
  const dir = env.DOCKER_CONFIG || path.join(env.HOME || homedir(), '.docker')
  let config: {
    auths?: Record<string, { auth?: string }>
    credHelpers?: Record<string, string>
    credsStore?: string
  }
  try {
    config = JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8')) as typeof config
  } catch {
    return {} // no Docker config: anonymous
  }
  const keys = registry === 'docker.io' ? ['https://index.docker.io/v1/', 'docker.io'] : [registry]
  for (const key of keys) {
    const auth = config.auths?.[key]?.auth
    if (!auth) continue
    const plain = Buffer.from(auth, 'base64').toString('utf8')
    const colon = plain.indexOf(':')
    if (colon > 0) return { username: plain.slice(0, colon), password: plain.slice(colon + 1) }
  }
  const helper = keys.map((k) => config.credHelpers?.[k]).find(Boolean) ?? config.credsStore
  if (!helper || !/^[A-Za-z0-9_.-]+$/.test(helper)) return {}
  for (const key of keys) {
    try {
      const out = execFileSync(`docker-credential-${helper}`, ['get'], {
        input: key,
        env,
        timeout: 10_000,
        stdio: ['pipe', 'pipe', 'ignore']
      }).toString()
      const c = JSON.parse(out) as { Username?: string; Secret?: string }
      // "<token>": an identity token for an OAuth flow the registry API here does not speak
      if (c.Username && c.Secret && c.Username !== '<token>')
        return { username: c.Username, password: c.Secret }
    } catch {
      /* the helper has nothing for this registry */
    }
  }
  return {}
}
