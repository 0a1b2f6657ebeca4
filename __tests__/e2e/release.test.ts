// Versions and releases end to end: build → tag → push → draft release → publish after the
// switch, run as GitHub runs the action, against a real dockerd and registry, with a loopback
// stand-in for GitHub's release API.
import { execFileSync, spawnSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import path from 'node:path'
import {
  FakeGitHub,
  commitVersion,
  registryDigest,
  settled,
  writeAppSource,
  expectOk,
  headSha,
  appFixture,
  httpGet,
  type TestApp,
  registryTags,
  runAction,
  visibleLog,
  docker,
  type Services,
  appContainers,
  historyRows,
  stateDir
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
  // each test is a repository of its own
  api.requests = []
  api.releases = []
  api.tags = {}
})

/** A push of the workspace's HEAD (or `sha`) whose head commit has `message`, as GitHub runs it. */
function push(inputs: Record<string, string>, ws: string, message: string, sha = headSha(ws)) {
  return runAction(inputs, {
    workspace: ws,
    sha,
    event: { head_commit: { message } },
    apiUrl: api.url
  })
}

/** Commit every change in the workspace with `message`. */
function commitAll(ws: string, message: string, ...flags: string[]): void {
  execFileSync('git', [
    '-C',
    ws,
    '-c',
    'user.name=t',
    '-c',
    'user.email=t@e',
    'commit',
    '-q',
    '-a',
    ...flags,
    '-m',
    message
  ])
}

/** A fresh app whose workspace holds `version` committed with `message`; releases on. */
function release(
  version: string,
  message: string
): { a: TestApp; inputs: Record<string, string>; ws: string } {
  const a = fixture.newApp('rel', { version })
  commitAll(a.ws, message, '--allow-empty')
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
      prerelease: false,
      draft: true
    }
  })
  // created as a draft, published once the version served
  expect(api.requests.filter((r) => r.method === 'PATCH')).toEqual([
    expect.objectContaining({ url: '/repos/acme/shop/releases/1', body: { draft: false } })
  ])
  expect(api.releases[0]).toMatchObject({ draft: false, target_commitish: sha })
  expect(await registryDigest(svc.registry, repo, 'latest')).toBe(
    await registryDigest(svc.registry, repo, 'v1.4.0')
  )
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

test('a draft a failed run left for this commit is reused and published', async () => {
  const { ws, inputs } = release('v2.0.0', 'ship v2.0.0')
  const sha = headSha(ws)
  api.addRelease({ tag_name: 'v2.0.0', target_commitish: sha, draft: true })
  const run = await push(inputs, ws, 'ship v2.0.0', sha)
  expectOk(run)
  expect(api.requests.filter((r) => r.method !== 'GET').map((r) => `${r.method} ${r.url}`)).toEqual(
    [`PATCH /repos/acme/shop/releases/${api.releases.length}`]
  )
  expect(run.outputs['release-url']).toBe('https://github.com/acme/shop/releases/tag/v2.0.0')
}, 120_000)

test('a pre-release is released and deployed, and latest stays where it was', async () => {
  const { a, ws, inputs } = release('v2.0.0-rc.1', 'ship v2.0.0-rc.1')
  const sha = headSha(ws)
  const run = await push(inputs, ws, 'ship v2.0.0-rc.1', sha)
  expectOk(run)
  expect(api.requests.find((r) => r.method === 'POST')!.body.prerelease).toBe(true)
  expect(await registryTags(svc.registry, a.repo)).toEqual(['v2.0.0-rc.1'])
  expect(run.log).toMatch(/v2\.0\.0-rc\.1 is a pre-release: latest stays where it is/)
}, 120_000)

test('a failed deploy leaves a draft release, named in the summary, and latest unchanged', async () => {
  const { a, ws, inputs } = release('v1.0.0', 'release v1.0.0')
  const good = await push(
    { ...inputs, 'health-path': '/health', 'health-timeout': '3' },
    ws,
    'release v1.0.0'
  )
  expectOk(good)
  const latestBefore = await registryDigest(svc.registry, a.repo, 'latest')
  const { sha, event } = commitVersion(a, { version: 'v1.1.0', neverHealthy: true })
  const bad = await runAction(
    { ...inputs, 'health-path': '/health', 'health-timeout': '3' },
    { workspace: ws, sha, event, apiUrl: api.url }
  )
  expect(bad.code).toBe(1)
  expect((await httpGet(a.url)).body).toBe('v1.0.0\n')
  const draft = api.releases.find((r) => r.tag_name === 'v1.1.0')
  expect(draft).toMatchObject({ draft: true, target_commitish: sha })
  expect(api.tags['v1.1.0']).toBeUndefined()
  expect(bad.summary).toMatch(/draft, not published: the new version did not serve/)
  expect(bad.summary).toContain(draft!.html_url)
  expect(await registryDigest(svc.registry, a.repo, 'latest')).toBe(latestBefore)
  expect(await registryTags(svc.registry, a.repo)).toEqual(['latest', 'v1.0.0', 'v1.1.0'])
}, 180_000)

test('a failing pre-switch task leaves a draft release and latest unchanged; nothing starts', async () => {
  const { a, ws, inputs } = release('v1.0.0', 'release v1.0.0')
  expectOk(await push(inputs, ws, 'release v1.0.0'))
  settled(a)
  const latestBefore = await registryDigest(svc.registry, a.repo, 'latest')
  const { sha, event } = commitVersion(a, { version: 'v1.1.0' })
  const bad = await runAction(
    { ...inputs, 'pre-switch-command': `sh -c 'echo "migration 7 failed"; exit 9'` },
    { workspace: ws, sha, event, apiUrl: api.url }
  )
  expect(bad.code).toBe(1)
  expect(bad.log).toMatch(/failed with exit code 9\. Nothing was started or switched/)
  expect((await httpGet(a.url)).body).toBe('v1.0.0\n')
  expect(api.releases.find((r) => r.tag_name === 'v1.1.0')).toMatchObject({ draft: true })
  expect(api.tags['v1.1.0']).toBeUndefined()
  expect(bad.summary).toMatch(/migration 7 failed/)
  expect(await registryDigest(svc.registry, a.repo, 'latest')).toBe(latestBefore)
  expect(Object.keys(appContainers(a)).filter((n) => !n.endsWith('-blue'))).toEqual([])
}, 180_000)

test('a build that fails while the server waits for it: the server changes nothing and frees its lock at once; the draft made meanwhile is deleted', async () => {
  const { a, ws, inputs } = release('v1.0.0', 'release v1.0.0')
  expectOk(await push(inputs, ws, 'release v1.0.0'))
  settled(a)
  const before = {
    history: historyRows(a),
    containers: appContainers(a),
    upstream: readFileSync(a.inputs['nginx-upstream-file']!, 'utf8')
  }
  // a build step that fails, after the server script has started and the draft is made
  const { sha } = commitVersion(a, { version: 'v1.1.0' })
  writeFileSync(
    path.join(ws, 'Dockerfile'),
    `${readFileSync(path.join(ws, 'Dockerfile'), 'utf8')}COPY no-such-file /\n`
  )
  commitAll(ws, 'release v1.1.0')
  api.latencyMs = 150
  try {
    const run = await push(inputs, ws, 'release v1.1.0')
    expect(run.code).toBe(1)
    expect(visibleLog(run)).toMatch(/docker build .*failed|exit code/i)
    // the script had begun before the build and was told to stop
    expect(visibleLog(run)).toMatch(/it said abort\): nothing was changed here/)
    expect(sha).not.toBe(headSha(ws))
  } finally {
    api.latencyMs = 0
  }
  // the lock is free the moment the run has ended, and nothing on the server changed
  expect(spawnSync('flock', ['-n', path.join(stateDir(a), 'lock'), 'true']).status).toBe(0)
  expect(historyRows(a)).toEqual(before.history)
  expect(appContainers(a)).toEqual(before.containers)
  expect(readFileSync(a.inputs['nginx-upstream-file']!, 'utf8')).toBe(before.upstream)
  expect((await httpGet(a.url)).body).toBe('v1.0.0\n')
  // the draft made while the image built was deleted: the version is not claimed by this commit
  expect(
    api.requests.filter((r) => r.method === 'POST' || r.method === 'DELETE').map((r) => r.method)
  ).toEqual(['POST', 'POST', 'DELETE'])
  expect(api.releases.map((r) => r.tag_name)).toEqual(['v1.0.0'])
  expect(await registryTags(svc.registry, a.repo)).toEqual(['latest', 'v1.0.0'])
}, 180_000)

test('a rollback moves latest to the version it put back', async () => {
  const { a, ws, inputs } = release('v1.0.0', 'release v1.0.0')
  const run1 = await push(inputs, ws, 'release v1.0.0', headSha(ws))
  expectOk(run1)
  const { sha, event } = commitVersion(a, { version: 'v1.1.0' })
  expectOk(await runAction(inputs, { workspace: ws, sha, event, apiUrl: api.url }))
  expect(await registryDigest(svc.registry, a.repo, 'latest')).toBe(
    await registryDigest(svc.registry, a.repo, 'v1.1.0')
  )
  settled(a)
  const back = await runAction(
    { ...inputs, rollback: 'previous' },
    { workspace: ws, sha, eventName: 'workflow_dispatch', event: {}, apiUrl: api.url }
  )
  expectOk(back)
  expect(back.outputs.version).toBe('v1.0.0')
  expect((await httpGet(a.url)).body).toBe('v1.0.0\n')
  expect(await registryDigest(svc.registry, a.repo, 'latest')).toBe(
    await registryDigest(svc.registry, a.repo, 'v1.0.0')
  )
}, 180_000)

test('a message that names a version released from another commit deploys as sha-, and the version tag is not pushed over', async () => {
  const { a, ws, inputs } = release('v1.0.0', 'release v1.0.0')
  expectOk(await push(inputs, ws, 'release v1.0.0', headSha(ws)))
  const v1 = await registryDigest(svc.registry, a.repo, 'v1.0.0')
  // a new commit whose message mentions the old version
  writeAppSource(ws, { version: 'fix' })
  commitAll(ws, 'fix: crash introduced in v1.0.0')
  const sha = headSha(ws)
  api.requests = []
  const run = await push(inputs, ws, 'fix: crash introduced in v1.0.0', sha)
  expectOk(run)
  expect(run.log).toMatch(
    /::notice title=v1\.0\.0 is released already::v1\.0\.0 is released already: tag v1\.0\.0 exists at commit [0-9a-f]{7}\. .*deploys as sha-/
  )
  expect(run.outputs).toMatchObject({
    version: '',
    image: `${svc.registry}/${a.repo}:sha-${sha.slice(0, 7)}`
  })
  expect((await httpGet(a.url)).body).toBe('fix\n')
  expect(await registryDigest(svc.registry, a.repo, 'v1.0.0')).toBe(v1)
  expect(api.requests.filter((r) => r.method !== 'GET')).toEqual([])

  // with releases off, the registry's label alone stops it
  writeAppSource(ws, { version: 'fix2' })
  commitAll(ws, 'release v1.0.0 again')
  const sha2 = headSha(ws)
  const again = await push(
    { ...inputs, 'create-release': 'false' },
    ws,
    'release v1.0.0 again',
    sha2
  )
  expectOk(again)
  expect(again.log).toMatch(
    /v1\.0\.0 is released already: .*:v1\.0\.0 is in the registry, built from commit [0-9a-f]{7}/
  )
  expect(await registryDigest(svc.registry, a.repo, 'v1.0.0')).toBe(v1)
  expect((await httpGet(a.url)).body).toBe('fix2\n')
}, 240_000)

test('a commit by a bot releases nothing, whatever versions it names', async () => {
  const { a, ws, inputs } = release('bumped', 'Bump actions/checkout from v4.1.0 to v4.2.0')
  const sha = headSha(ws)
  const run = await runAction(inputs, {
    workspace: ws,
    sha,
    event: {
      head_commit: {
        message: 'Bump lib to v4.2.0',
        author: { name: 'dependabot[bot]', username: 'dependabot[bot]' }
      }
    },
    apiUrl: api.url
  })
  expectOk(run)
  expect(run.log).toMatch(
    /::notice title=No release::The commit is by dependabot\[bot\], a bot account/
  )
  expect(run.outputs.version).toBe('')
  expect(await registryTags(svc.registry, a.repo)).toEqual(['latest', `sha-${sha.slice(0, 7)}`])
  expect(api.requests.filter((r) => r.method === 'POST')).toEqual([])
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
  const run = await push(inputs, ws, 'fix typo', sha)
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
    /::notice title=No version in the commit message::No version found in the commit message.*put a version such as v1\.2\.3 in the commit message or set the 'version' input/
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

test('telling GitHub and the team: a deployment record per run (a rollback against the version it put back, a failure as failure) and a webhook message each; outputs previous-version, result and url; the summary shows v1.0.0 → v1.1.0', async () => {
  const messages: { text: string }[] = []
  const hook = createServer((req, res) => {
    let raw = ''
    req.on('data', (d: Buffer) => (raw += d.toString()))
    req.on('end', () => {
      messages.push(JSON.parse(raw) as { text: string })
      res.writeHead(200).end('ok')
    })
  })
  await new Promise<void>((r) => hook.listen(0, '127.0.0.1', () => r()))
  try {
    const { a, ws, inputs: base } = release('v1.0.0', 'release v1.0.0')
    const inputs = {
      ...base,
      'health-path': '/health',
      'health-timeout': '3',
      url: 'https://shop.example.com',
      'deployment-environment': 'production',
      'notify-url': `http://127.0.0.1:${(hook.address() as AddressInfo).port}/hook`
    }
    const first = await push(inputs, ws, 'release v1.0.0')
    expectOk(first)
    expect(first.outputs).toMatchObject({
      result: 'deployed',
      'previous-version': '',
      url: 'https://shop.example.com'
    })
    const { sha, event } = commitVersion(a, { version: 'v1.1.0' })
    const second = await runAction(inputs, { workspace: ws, sha, event, apiUrl: api.url })
    expectOk(second)
    expect(second.outputs).toMatchObject({ result: 'deployed', 'previous-version': 'v1.0.0' })
    expect(second.summary).toContain('v1.0.0 → v1.1.0')
    settled(a)
    // the rollback is dispatched from the v1.1.0 commit: its record names v1.0.0's tag
    const back = await runAction(
      { ...inputs, rollback: 'previous' },
      { workspace: ws, sha, eventName: 'workflow_dispatch', event: {}, apiUrl: api.url }
    )
    expectOk(back)
    expect(back.outputs).toMatchObject({
      result: 'rolled-back',
      version: 'v1.0.0',
      'previous-version': 'v1.1.0'
    })
    settled(a)
    const bad = commitVersion(a, { version: 'v1.2.0', neverHealthy: true })
    const failed = await runAction(inputs, {
      workspace: ws,
      sha: bad.sha,
      event: bad.event,
      apiUrl: api.url
    })
    expect(failed.code).toBe(1)
    expect(failed.outputs).toMatchObject({ result: 'failed', 'previous-version': 'v1.0.0' })

    expect(
      api.deployments.map((d) => [d.ref, d.environment, d.statuses.map((s) => s.state)])
    ).toEqual([
      ['v1.0.0', 'production', ['success']],
      ['v1.1.0', 'production', ['success']],
      ['v1.0.0', 'production', ['success']],
      // v1.2.0 was never released (its draft has no tag): the commit
      [bad.sha, 'production', ['failure']]
    ])
    expect(api.deployments[1]).toMatchObject({
      description: 'deployed: v1.0.0 → v1.1.0',
      payload: { version: 'v1.1.0', previous_version: 'v1.0.0', result: 'deployed' }
    })
    expect(api.deployments[1]!.statuses[0]).toMatchObject({
      environment_url: 'https://shop.example.com',
      log_url: 'https://github.com/acme/shop/actions/runs/4242',
      description: 'v1.0.0 → v1.1.0 serves'
    })
    expect(api.deployments[3]!.statuses[0]!.description).toMatch(/^failed: /)
    expect(messages.map((m) => m.text.split('\n')[0])).toEqual([
      expect.stringMatching(/^✅ \S+ v1\.0\.0: deployed by octocat in \d+ s$/),
      expect.stringMatching(/^✅ \S+ v1\.0\.0 → v1\.1\.0: deployed by octocat in \d+ s$/),
      expect.stringMatching(/^✅ \S+ v1\.1\.0 → v1\.0\.0: rolled back by octocat in \d+ s$/),
      expect.stringMatching(/^❌ \S+ v1\.0\.0 → v1\.2\.0: failed by octocat in \d+ s$/)
    ])
    expect(messages[1]!.text).toContain('<https://github.com/acme/shop/actions/runs/4242|the run>')
    expect(messages[3]!.text).toMatch(/\n> .*health/)

    // a webhook that refuses, and GitHub refusing the record: warnings, the deploy still succeeds
    hook.removeAllListeners('request')
    hook.on('request', (_req, res) => res.writeHead(500).end())
    const c = commitVersion(a, { version: 'v1.3.0' })
    api.failNext = 0
    const told = await runAction(
      { ...inputs, 'deployment-environment': 'prod\u0007uction' },
      { workspace: ws, sha: c.sha, event: c.event, apiUrl: api.url }
    )
    expect(told.code).toBe(1)
    expect(told.log).toMatch(/Invalid deployment-environment/)
    const quiet = await runAction(inputs, {
      workspace: ws,
      sha: c.sha,
      event: c.event,
      apiUrl: api.url
    })
    expectOk(quiet)
    expect(quiet.log).toMatch(/The notification could not be sent: the webhook answered 500/)
  } finally {
    hook.close()
  }
}, 300_000)
