import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import {
  parseChallenge,
  registryBaseUrl,
  registryClient,
  registryCredentials,
  tokenRealm,
  repositoryPath
} from '../src/registry.js'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'

/**
 * A small registry on loopback that asks for a bearer token as ghcr.io and Docker Hub do: a 401
 * with a challenge, a token endpoint that checks the Basic credential and the scope.
 */
class TokenRegistry {
  manifests = new Map<string, { body: string; type: string }>()
  blobs = new Map<string, string>()
  requests: string[] = []
  url = ''
  private server = createServer((req, res) => this.handle(req, res))

  async start(): Promise<this> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', () => r()))
    this.url = `127.0.0.1:${(this.server.address() as AddressInfo).port}`
    return this
  }
  stop(): Promise<void> {
    return new Promise((r) => this.server.close(() => r()))
  }

  private async handle(req: IncomingMessage, res: ServerResponse) {
    let body = ''
    for await (const c of req) body += c
    const url = new URL(req.url ?? '', `http://${this.url}`)
    this.requests.push(`${req.method} ${url.pathname}${url.search}`)
    if (url.pathname === '/token') {
      if (req.headers.authorization !== `Basic ${Buffer.from('ci:pw').toString('base64')}`)
        return res.writeHead(401).end()
      return res
        .writeHead(200, { 'content-type': 'application/json' })
        .end(JSON.stringify({ token: `tok ${url.searchParams.get('scope')}` }))
    }
    const scope = /^Bearer tok repository:acme\/shop:(.*)$/.exec(req.headers.authorization ?? '')
    const push = req.method === 'PUT'
    if (!scope || (push && scope[1] !== 'pull,push'))
      return res
        .writeHead(401, {
          'www-authenticate': `Bearer realm="http://${this.url}/token",service="test",scope="repository:acme/shop:${push ? 'pull,push' : 'pull'}"`
        })
        .end()
    const m = /^\/v2\/acme\/shop\/(manifests|blobs)\/(.+)$/.exec(url.pathname)
    if (m?.[1] === 'manifests') {
      if (req.method === 'PUT') {
        this.manifests.set(m[2]!, { body, type: req.headers['content-type'] ?? '' })
        return res.writeHead(201, { 'docker-content-digest': 'sha256:put' }).end()
      }
      const got = this.manifests.get(m[2]!)
      if (!got) return res.writeHead(404).end()
      return res.writeHead(200, { 'content-type': got.type }).end(got.body)
    }
    if (m?.[1] === 'blobs' && this.blobs.has(m[2]!))
      return res.writeHead(200).end(this.blobs.get(m[2]!))
    res.writeHead(404).end()
  }
}

let reg: TokenRegistry
beforeAll(async () => {
  reg = await new TokenRegistry().start()
  reg.blobs.set(
    'sha256:cfg',
    JSON.stringify({ config: { Labels: { 'org.opencontainers.image.revision': 'abc' } } })
  )
  const image = JSON.stringify({ config: { digest: 'sha256:cfg' } })
  reg.manifests.set('sha256:img', {
    body: image,
    type: 'application/vnd.oci.image.manifest.v1+json'
  })
  reg.manifests.set('v1', {
    body: JSON.stringify({
      manifests: [
        { digest: 'sha256:att', platform: { os: 'unknown' } },
        { digest: 'sha256:img', platform: { os: 'linux' } }
      ]
    }),
    type: 'application/vnd.oci.image.index.v1+json'
  })
})
afterAll(() => reg.stop())

test('labels of a tag behind an index, through a bearer token got with the credential', async () => {
  const client = registryClient(`${reg.url}/acme/shop`, reg.url, { username: 'ci', password: 'pw' })
  expect(await client.labels('v1')).toEqual({ 'org.opencontainers.image.revision': 'abc' })
  expect(await client.labels('v9')).toBeUndefined()
})

test('retag puts the same manifest bytes under the new tag, with a push token', async () => {
  const client = registryClient(`${reg.url}/acme/shop`, reg.url, { username: 'ci', password: 'pw' })
  reg.requests = []
  await client.retag('v1', 'latest')
  expect(reg.manifests.get('latest')).toEqual(reg.manifests.get('v1'))
  expect(reg.requests).toContain(
    'GET /token?service=test&scope=repository%3Aacme%2Fshop%3Apull%2Cpush'
  )
})

test('a wrong credential is an error that names the inputs', async () => {
  const client = registryClient(`${reg.url}/acme/shop`, reg.url, { username: 'ci', password: 'no' })
  await expect(client.labels('v1')).rejects.toThrow(
    /refused a token .* registry-username and registry-password/
  )
})

test.each([
  ['127.0.0.1:5000', 'http://127.0.0.1:5000'],
  ['localhost:5000', 'http://localhost:5000'],
  ['ghcr.io', 'https://ghcr.io'],
  ['docker.io', 'https://registry-1.docker.io']
])('registry %s answers at %s', (registry, url) => {
  expect(registryBaseUrl(registry)).toBe(url)
})

test.each([
  ['ghcr.io/acme/shop', 'ghcr.io', 'acme/shop'],
  ['nginx', 'docker.io', 'library/nginx'],
  ['acme/shop', 'docker.io', 'acme/shop']
])('repository of %s in %s is %s', (image, registry, repo) => {
  expect(repositoryPath(image, registry)).toBe(repo)
})

test('a challenge is read into scheme and parameters', () => {
  expect(parseChallenge('Bearer realm="https://a/token",service="a",scope="x:y:pull"')).toEqual({
    scheme: 'bearer',
    params: { realm: 'https://a/token', service: 'a', scope: 'x:y:pull' }
  })
})

test('without credential inputs, what docker login stored for the registry is used', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'bgd-dockercfg-'))
  writeFileSync(
    path.join(dir, 'config.json'),
    JSON.stringify({ auths: { 'ghcr.io': { auth: Buffer.from('me:tok:en').toString('base64') } } })
  )
  expect(registryCredentials('ghcr.io', {}, { DOCKER_CONFIG: dir })).toEqual({
    username: 'me',
    password: 'tok:en'
  })
  expect(registryCredentials('quay.io', {}, { DOCKER_CONFIG: dir })).toEqual({})
  expect(
    registryCredentials(
      'ghcr.io',
      { registryUsername: 'u', registryPassword: 'p' },
      { DOCKER_CONFIG: dir }
    )
  ).toEqual({ username: 'u', password: 'p' })
})

test.each([
  ['https://auth.example/token', 'https://auth.example/token'],
  ['http://127.0.0.1:5000/token', 'http://127.0.0.1:5000/token'],
  ['http://localhost/token', 'http://localhost/token'],
  ['http://[::1]:9/token', 'http://[::1]:9/token']
])('the token realm %s is used', (realm, url) => {
  expect(tokenRealm(realm, 'r').href).toBe(url)
})

test.each([
  'http://auth.example/token',
  'http://198.18.0.9/token',
  'ftp://auth.example/token',
  'file:///etc/passwd',
  'not a url'
])('the token realm %s is refused, and the credential never sent to it', async (realm) => {
  expect(() => tokenRealm(realm, 'r')).toThrow(/not HTTPS|not a URL/)
  const asked: string[] = []
  const fake = (async (input: string | URL) => {
    asked.push(String(input))
    return new Response(null, {
      status: 401,
      headers: { 'www-authenticate': `Bearer realm="${realm}",service="x"` }
    })
  }) as typeof fetch
  const client = registryClient(
    'ghcr.io/acme/shop',
    'ghcr.io',
    { username: 'u', password: 'p' },
    fake
  )
  await expect(client.digest('v1')).rejects.toThrow(/not HTTPS|not a URL/)
  expect(asked).toEqual(['https://ghcr.io/v2/acme/shop/manifests/v1'])
})

test("a laptop's credential helpers answer as they do for the docker CLI: credHelpers for the registry, else credsStore", () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'bgd-dockercfg-'))
  const bin = mkdtempSync(path.join(tmpdir(), 'bgd-helpers-'))
  // two helpers, as docker-credential-* are: the registry on stdin, JSON on stdout
  const helper = (name: string, user: string) =>
    writeFileSync(
      path.join(bin, `docker-credential-${name}`),
      `#!/bin/sh\nread r\ncase "$r" in\n  *.example) printf '{"ServerURL":"%s","Username":"${user}","Secret":"s3cret-%s"}' "$r" "$r" ;;\n  *) echo "credentials not found in native keychain"; exit 1 ;;\nesac\n`,
      { mode: 0o755 }
    )
  helper('pass', 'from-pass')
  helper('desktop', 'from-desktop')
  writeFileSync(
    path.join(dir, 'config.json'),
    JSON.stringify({
      auths: { 'ghcr.io': {}, 'reg.example': {} },
      credHelpers: { 'reg.example': 'pass' },
      credsStore: 'desktop'
    })
  )
  const env = { DOCKER_CONFIG: dir, PATH: `${bin}:${process.env.PATH ?? ''}` }
  expect(registryCredentials('reg.example', {}, env)).toEqual({
    username: 'from-pass',
    password: 's3cret-reg.example'
  })
  expect(registryCredentials('other.example', {}, env)).toEqual({
    username: 'from-desktop',
    password: 's3cret-other.example'
  })
  // the helper has nothing for it: anonymous, as before
  expect(registryCredentials('ghcr.io', {}, env)).toEqual({})
})
