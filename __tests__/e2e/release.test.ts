import { execFileSync } from 'node:child_process'
// Issue 2 end to end: build → tag → push → release, run as GitHub runs the action,
// against a real dockerd and registry, with a loopback stand-in for GitHub's release API.
import {
  FakeGitHub,
  expectOk,
  headSha,
  appFixture,
  httpGet,
  type TestApp,
  registryTags,
  runAction,
  visibleLog,
  docker,
  type Services
} from './helpers.js'

const fixture = appFixture()
let svc: Services
let api: FakeGitHub

beforeAll(async () => {
  svc = fixture.services()
  api = await new FakeGitHub().start()
})
afterAll(() => api.stop())
beforeEach(() => {
  api.requests = []
})

/** A fresh app whose workspace holds `version` committed with `message`; releases on. */
function release(
  version: string,
  message: string
): { a: TestApp; inputs: Record<string, string>; ws: string } {
  const a = fixture.newApp('rel', { version })
  execFileSync('git', [
    '-C',
    a.ws,
    '-c',
    'user.name=t',
    '-c',
    'user.email=t@e',
    'commit',
    '-q',
    '--allow-empty',
    '-m',
    message
  ])
  return { a, ws: a.ws, inputs: { ...a.inputs, 'create-release': 'true' } }
}

test('a push whose message holds v1.4.0 pushes :v1.4.0 and :latest and creates release v1.4.0; a re-run succeeds', async () => {
  const { a, ws, inputs } = release('v1.4.0', 'Release v1.4.0\n\nwith notes')
  const repo = a.repo
  const sha = headSha(ws)
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
  const { ws, inputs } = release('v2.0.0-rc.1', 'ship v2.0.0-rc.1')
  api.releases.push({
    id: 99,
    tag_name: 'v2.0.0-rc.1',
    name: 'v2.0.0-rc.1',
    draft: true,
    html_url: 'https://github.com/acme/shop/releases/draft-99'
  })
  const run = await runAction(inputs, {
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
  const { a, ws, inputs } = release('v3.1.0', 'feat: things (v3.1.0)')
  const repo = a.repo
  const run = await runAction(inputs, {
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
  const { a, ws, inputs } = release('untagged', 'fix typo')
  const repo = a.repo
  const sha = headSha(ws)
  const run = await runAction(inputs, {
    workspace: ws,
    sha,
    event: { head_commit: { message: 'fix typo' } },
    apiUrl: api.url
  })
  expectOk(run)
  expect(await registryTags(svc.registry, repo)).toEqual(['latest', `sha-${sha.slice(0, 7)}`])
  expect(run.outputs.version).toBe('')
  expect(run.outputs['release-url']).toBe('')
  // the deploy still goes ahead, with the sha- tag
  expect(run.outputs).toMatchObject({
    deployed: 'true',
    image: `${svc.registry}/${repo}:sha-${sha.slice(0, 7)}`
  })
  expect((await httpGet(a.url)).body).toBe('untagged\n')
  expect(api.requests).toEqual([])
  expect(run.log).toMatch(
    /::notice::No version found in the commit message.*put a version such as v1\.2\.3 in the commit message or set the 'version' input/
  )
}, 120_000)

test('bad input fails before any side effect, naming the input and the fix', async () => {
  const { a, ws, inputs } = release('v9.9.9', 'v9.9.9')
  const repo = a.repo
  const run = await runAction(
    { ...inputs, 'health-interval': 'often', 'ssh-key': 'not a key SECRETVALUE' },
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
