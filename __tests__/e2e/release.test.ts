// Issue 2 end to end: build → tag → push → release, run as GitHub runs the action,
// against a real dockerd and registry, with a loopback stand-in for GitHub's release API.
import {
  FakeGitHub,
  expectOk,
  headSha,
  makeWorkspace,
  registryTags,
  runAction,
  services,
  visibleLog,
  docker,
  type Services
} from './helpers.js'

let svc: Services
let api: FakeGitHub

beforeAll(async () => {
  svc = services()
  api = await new FakeGitHub().start()
})
afterAll(() => api.stop())
beforeEach(() => {
  api.requests = []
})

let n = 0
function appInputs(repo: string): Record<string, string> {
  n++
  return {
    image: `${svc.registry}/${repo}`,
    'github-token': 'ghs_faketoken0123456789',
    host: svc.sshHost,
    port: String(svc.sshPort),
    username: svc.sshUser,
    'ssh-key': svc.sshKey,
    'host-fingerprint': svc.fingerprintEd25519,
    'app-name': repo.replace(/\//g, '-'),
    'blue-port': String(21000 + n * 10),
    'green-port': String(21001 + n * 10),
    'nginx-upstream-file': `${svc.nginxConfd}/${repo.replace(/\//g, '-')}-upstream.conf`,
    'nginx-test-command': `nginx -t -q -c ${svc.nginxConf}`,
    'nginx-reload-command': `nginx -c ${svc.nginxConf} -s reload`
  }
}

const repoName = () => `e2e/rel-${Date.now().toString(36)}-${n}`

test('a push whose message holds v1.4.0 pushes :v1.4.0 and :latest and creates release v1.4.0; a re-run succeeds', async () => {
  const repo = repoName()
  const ws = makeWorkspace({ version: 'v1.4.0' }, 'Release v1.4.0\n\nwith notes')
  const sha = headSha(ws)
  const inputs = appInputs(repo)
  const event = { head_commit: { id: sha, message: 'Release v1.4.0\n\nwith notes' } }

  const first = await runAction(inputs, { workspace: ws, sha, event, apiUrl: api.url })
  expectOk(first)
  expect(await registryTags(svc.registry, repo)).toEqual(['latest', 'v1.4.0'])
  expect(first.outputs).toMatchObject({
    version: 'v1.4.0',
    image: `${svc.registry}/${repo}:v1.4.0`,
    tags: `${svc.registry}/${repo}:v1.4.0\n${svc.registry}/${repo}:latest`,
    'release-url': 'https://github.com/acme/shop/releases/tag/v1.4.0'
  })
  const create = api.requests.find((r) => r.method === 'POST')
  expect(create).toMatchObject({
    url: '/repos/acme/shop/releases',
    auth: 'token ghs_faketoken0123456789',
    body: {
      tag_name: 'v1.4.0',
      name: 'v1.4.0',
      target_commitish: sha,
      generate_release_notes: true,
      prerelease: false
    }
  })
  expect(first.summary).toMatch(/v1\.4\.0/)
  expect(first.summary).toMatch(/sha256:[0-9a-f]{64}/)
  expect(visibleLog(first)).not.toContain('ghs_faketoken0123456789')

  // the labels tie the image to the commit
  const labels = JSON.parse(
    docker(
      'image',
      'inspect',
      '--format',
      '{{json .Config.Labels}}',
      `${svc.registry}/${repo}:v1.4.0`
    )
  ) as Record<string, string>
  expect(labels).toMatchObject({
    'org.opencontainers.image.version': 'v1.4.0',
    'org.opencontainers.image.revision': sha,
    'org.opencontainers.image.source': 'https://github.com/acme/shop'
  })

  api.requests = []
  const again = await runAction(inputs, { workspace: ws, sha, event, apiUrl: api.url })
  expectOk(again)
  expect(again.outputs['release-url']).toBe('https://github.com/acme/shop/releases/tag/v1.4.0')
  expect(api.requests.filter((r) => r.method === 'POST')).toEqual([])
  expect(api.releases.filter((r) => r.tag_name === 'v1.4.0')).toHaveLength(1)
}, 120_000)

test('a release that exists as a draft (404 by tag, 422 already_exists on create) is reused', async () => {
  const repo = repoName()
  const ws = makeWorkspace({ version: 'v2.0.0-rc.1' })
  api.releases.push({
    id: 99,
    tag_name: 'v2.0.0-rc.1',
    name: 'v2.0.0-rc.1',
    draft: true,
    html_url: 'https://github.com/acme/shop/releases/draft-99'
  })
  const run = await runAction(appInputs(repo), {
    workspace: ws,
    sha: headSha(ws),
    event: { head_commit: { message: 'ship v2.0.0-rc.1' } },
    apiUrl: api.url
  })
  expectOk(run)
  expect(api.requests.map((r) => `${r.method} ${r.url.split('?')[0]}`)).toEqual([
    'GET /repos/acme/shop/releases/tags/v2.0.0-rc.1',
    'POST /repos/acme/shop/releases',
    'GET /repos/acme/shop/releases'
  ])
  expect(api.requests[1]!.body.prerelease).toBe(true)
  expect(run.outputs['release-url']).toBe('https://github.com/acme/shop/releases/draft-99')
}, 120_000)

test('workflow_dispatch (no head_commit) reads the message of GITHUB_SHA with git', async () => {
  const repo = repoName()
  const ws = makeWorkspace({ version: 'v3.1.0' }, 'feat: things (v3.1.0)')
  const run = await runAction(appInputs(repo), {
    workspace: ws,
    sha: headSha(ws),
    eventName: 'workflow_dispatch',
    event: { inputs: {} },
    apiUrl: api.url
  })
  expectOk(run)
  expect(run.outputs.version).toBe('v3.1.0')
  expect(await registryTags(svc.registry, repo)).toEqual(['latest', 'v3.1.0'])
}, 120_000)

test('no version in the message: latest and sha- tags, no release, a notice that says how', async () => {
  const repo = repoName()
  const ws = makeWorkspace({ version: 'untagged' })
  const sha = headSha(ws)
  const run = await runAction(appInputs(repo), {
    workspace: ws,
    sha,
    event: { head_commit: { message: 'fix typo' } },
    apiUrl: api.url
  })
  expectOk(run)
  expect(await registryTags(svc.registry, repo)).toEqual(['latest', `sha-${sha.slice(0, 7)}`])
  expect(run.outputs.version).toBe('')
  expect(run.outputs['release-url']).toBe('')
  expect(api.requests).toEqual([])
  expect(run.log).toMatch(
    /::notice::No version found in the commit message.*put a version such as v1\.2\.3 in the commit message or set the 'version' input/
  )
}, 120_000)

test('bad input fails before any side effect, naming the input and the fix', async () => {
  const repo = repoName()
  const ws = makeWorkspace({ version: 'v9.9.9' })
  const run = await runAction(
    { ...appInputs(repo), 'health-interval': 'often', 'ssh-key': 'not a key SECRETVALUE' },
    {
      workspace: ws,
      sha: headSha(ws),
      event: { head_commit: { message: 'v9.9.9' } },
      apiUrl: api.url
    }
  )
  expect(run.code).toBe(1)
  expect(run.log).toMatch(/Invalid health-interval 'often'\. Expected a number from 0\.05 to 60/)
  expect(run.log).toMatch(/Invalid ssh-key\. Expected the text of a private key/)
  expect(visibleLog(run)).not.toContain('SECRETVALUE')
  expect(run.log).toContain('::add-mask::not a key SECRETVALUE')
  expect(await registryTags(svc.registry, repo)).toEqual([])
  expect(api.requests).toEqual([])
  expect(run.outputs.deployed).toBe('false')
}, 60_000)
