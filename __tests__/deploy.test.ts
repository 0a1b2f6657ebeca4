// The orchestrator through its seams, with small recording fakes: what runs in which order, and
// what a rollback and a failed server do to the registry and the release.
import { testConfig } from './support/config.js'
import type { RunContext } from '../src/context.js'
import { deploy, type Deps, type Outcome } from '../src/deploy.js'
import type { Registry } from '../src/registry.js'
import type { CreateReleaseParams, Release, ReleasesApi } from '../src/release.js'
import type { RunOptions, RunResult } from '../src/runner.js'
import type { ExecResult, RemoteShell } from '../src/ssh.js'
import type { Readable } from 'node:stream'

const sha = 'c0ffee0000000000000000000000000000000000'
const ctx: RunContext = {
  sha,
  owner: 'acme',
  repo: 'shop',
  repositoryUrl: 'https://github.com/acme/shop',
  runUrl: 'https://github.com/acme/shop/actions/runs/1',
  actor: 'octocat',
  eventName: 'push',
  workspace: '/ws',
  headCommitMessage: 'release v1.4.0'
}

const config = (extra: Record<string, string> = {}) =>
  testConfig({ 'github-token': 'ghs_x', ...extra })

/** Every side effect, in order. */
function fakes(
  answer: { out: string; code: number | null },
  fail: {
    build?: boolean
    release?: boolean
    connect?: boolean
    /** a build that runs until it is stopped (its signal), or 50 ms */
    slowBuild?: boolean
    /** the registry's labels of the version's tag */
    labels?: Record<string, string>
    /** a script that stops waiting for the image before the runner says pull */
    gaveUp?: boolean
    /** the registry's manifests: reference (tag or digest) -> digest */
    digests?: Record<string, string>
  } = {}
) {
  const calls: string[] = []
  const releases: Release[] = []
  const deps: Deps = {
    runner: {
      async run(cmd: string, args: string[], opts?: RunOptions): Promise<RunResult> {
        calls.push(`${cmd} ${args[0]}`)
        if (fail.slowBuild && args[0] === 'build')
          return new Promise((resolve) => {
            const t = setTimeout(() => resolve({ code: 0, stdout: '', stderr: '' }), 50)
            opts?.signal?.addEventListener('abort', () => {
              clearTimeout(t)
              calls.push('docker build stopped')
              resolve({ code: 143, stdout: '', stderr: '' })
            })
          })
        if (fail.build && args[0] === 'build')
          return { code: 1, stdout: '', stderr: 'no Dockerfile' }
        return { code: 0, stdout: '', stderr: '' }
      }
    },
    releases: (): ReleasesApi => ({
      list: async () => releases,
      tagCommit: async () => undefined,
      async create(p: CreateReleaseParams) {
        calls.push(`release create ${p.tag_name} draft=${p.draft}`)
        if (fail.release) throw new Error('HTTP 500 from GitHub')
        const r = { id: 1, tag_name: p.tag_name, html_url: 'u', draft: p.draft }
        releases.push(r)
        return r
      },
      async publish(id: number) {
        calls.push(`release publish ${id}`)
        return { id, tag_name: 'v1.4.0', html_url: 'published', draft: false }
      },
      async remove(id: number) {
        calls.push(`release remove ${id}`)
        releases.splice(
          releases.findIndex((r) => r.id === id),
          1
        )
      }
    }),
    registry: (): Registry => ({
      labels: async (tag: string) => {
        calls.push(`registry labels ${tag}`)
        return fail.labels
      },
      retag: async (from: string, to: string) => {
        calls.push(`registry retag ${from} ${to}`)
        if (fail.digests?.[from]) fail.digests[to] = fail.digests[from]
        return undefined
      },
      digest: async (reference: string) => {
        calls.push(`registry digest ${reference}`)
        return fail.digests?.[reference]
      }
    }),
    connect: async () => {
      calls.push('connect')
      if (fail.connect) throw new Error('Host key verification failed')
      const shell: RemoteShell = {
        // a script that prepares at once and, when it was started before the build
        // (build_wait), goes on only at the runner's word: `pull`, or ends at `abort`
        async exec(cmd, o): Promise<ExecResult> {
          calls.push('server')
          if (/'build_wait=/.test(cmd) && fail.gaveUp) {
            o.onStdout(Buffer.from('::bg-deploy-error:: no image from the runner within 3600s\n'))
            return { code: 75, signal: null }
          }
          if (/'build_wait=/.test(cmd)) {
            const word = await new Promise<string>((resolve) => {
              let text = ''
              const stdin = o.stdin as Readable
              stdin.on('data', (d: Buffer) => (text += d.toString()))
              stdin.on('end', () => resolve(text.split('\nend\n')[1]?.trim() ?? ''))
            })
            calls.push(`server got ${word || 'nothing'}`)
            if (word !== 'pull') {
              o.onStdout(Buffer.from('::bg-deploy-error:: nothing was changed here\n'))
              return { code: 1, signal: null }
            }
          }
          o.onStdout(Buffer.from(answer.out))
          return { code: answer.code, signal: null }
        },
        dispose: () => calls.push('dispose')
      }
      return shell
    }
  }
  return { deps, calls }
}

const ok = (version: string, image: string) =>
  `::bg-deploy-result:: deployed=true color=green previous_color=blue version=${version} image=${image}\n`

test('a deploy connects first, builds and pushes the version, drafts the release, switches, then moves latest and publishes', async () => {
  const { deps, calls } = fakes({ out: ok('v1.4.0', 'ghcr.io/acme/shop:v1.4.0'), code: 0 })
  const outcome: Outcome = { tags: [], deployed: false, events: [] }
  await deploy(config(), ctx, deps, outcome)
  // the server script starts before the push, the draft is made meanwhile, and the script goes on
  // (pull) only once both are done
  // the image builds while the server is connected and the version checked
  expect(calls.slice(0, 4)).toEqual(['docker build', 'connect', 'registry labels v1.4.0', 'server'])
  expect(calls.slice(4, 6).sort()).toEqual(['docker push', 'release create v1.4.0 draft=true'])
  expect(calls.slice(6)).toEqual([
    'server got pull',
    'registry retag v1.4.0 latest',
    'release publish 1',
    'dispose'
  ])
  expect(outcome.events.map((e) => e.name).sort()).toEqual([
    'build',
    'built',
    'drafted',
    'published',
    'pushed',
    'release',
    'sent'
  ])
  expect(outcome).toMatchObject({
    version: 'v1.4.0',
    releaseUrl: 'published',
    releaseDraft: false,
    tags: ['ghcr.io/acme/shop:v1.4.0', 'ghcr.io/acme/shop:latest']
  })
})

test.each([
  ['build', { build: true }, /docker build/, ['release remove 1']],
  ['release', { release: true }, /HTTP 500/, []]
] as [string, { build?: boolean; release?: boolean }, RegExp, string[]][])(
  'a failed %s tells the server, which started before the build, to change nothing; a draft made for an image never pushed is deleted',
  async (_what, fail, error, removed) => {
    const { deps, calls } = fakes({ out: ok('v1.4.0', 'ghcr.io/acme/shop:v1.4.0'), code: 0 }, fail)
    const outcome: Outcome = { tags: [], deployed: false, events: [] }
    await expect(deploy(config(), ctx, deps, outcome)).rejects.toThrow(error)
    expect(calls).toContain('server got abort')
    // the push waits for the draft that claims the version: a failed draft pushes nothing
    expect(calls.filter((c) => /remove|retag|publish|push/.test(c))).toEqual(
      fail.build ? removed : []
    )
    expect(outcome.deployed).toBe(false)
    expect(outcome.failedPhase).toBe(fail.build ? 'build' : 'drafting the release')
    if (fail.build) expect(outcome.releaseUrl).toBeUndefined()
  }
)

test('a build that outlasts the server script’s wait: the script is started again once the image is pushed', async () => {
  const { deps, calls } = fakes(
    { out: ok('v1.4.0', 'ghcr.io/acme/shop:v1.4.0'), code: 0 },
    { gaveUp: true }
  )
  const outcome: Outcome = { tags: [], deployed: false, events: [] }
  await deploy(config(), ctx, deps, outcome)
  expect(calls.filter((c) => /^(server|docker push)/.test(c))).toEqual([
    'server',
    'docker push',
    'server'
  ])
  expect(outcome.deployed).toBe(true)
})

test('a server that cannot be reached stops the build: nothing is pushed, released or run', async () => {
  const { deps, calls } = fakes({ out: '', code: 0 }, { connect: true, slowBuild: true })
  const outcome: Outcome = { tags: [], deployed: false, events: [] }
  await expect(deploy(config(), ctx, deps, outcome)).rejects.toThrow(/Host key verification/)
  expect(calls).toEqual([
    'docker build',
    'connect',
    'registry labels v1.4.0',
    'docker build stopped'
  ])
})

test.each([
  ['holds this commit already', sha, ['docker build', 'docker build stopped'], []],
  [
    'holds the version from another commit',
    'f'.repeat(40),
    ['docker build', 'docker build stopped', 'docker build', 'docker push'],
    ['ghcr.io/acme/shop:sha-c0ffee0']
  ]
])(
  'a registry that %s: the build begun meanwhile is stopped (and begun again as sha-)',
  async (_what, revision, docker, pushed) => {
    const { deps, calls } = fakes(
      { out: ok('v1.4.0', 'ghcr.io/acme/shop:v1.4.0'), code: 0 },
      { slowBuild: true, labels: { 'org.opencontainers.image.revision': revision } }
    )
    const outcome: Outcome = { tags: [], deployed: false, events: [] }
    await deploy(config({ 'create-release': 'false' }), ctx, deps, outcome).catch(() => undefined)
    expect(calls.filter((c) => c.startsWith('docker'))).toEqual(docker)
    if (pushed.length) expect(outcome.tags).toEqual(pushed)
  }
)

test('a failed server leaves the draft and latest where they were, and the outcome has its timeline and history', async () => {
  const { deps, calls } = fakes({
    out: [
      '::bg-deploy-event:: begin 1700000000000',
      '::bg-deploy-phase:: health shop-green',
      '::bg-deploy-history:: 2026-11-27T00:00:00Z\toctocat\t-\tdeploy\tv1.4.0\tghcr.io/acme/shop:v1.4.0\tgreen\tfailed-health',
      '::bg-deploy-serving:: color=blue version=v1.3.0',
      '::bg-deploy-error:: health failed',
      ''
    ].join('\n'),
    code: 1
  })
  const outcome: Outcome = { tags: [], deployed: false, events: [] }
  await expect(deploy(config(), ctx, deps, outcome)).rejects.toThrow(/health failed/)
  expect(calls.filter((c) => /retag|publish/.test(c))).toEqual([])
  expect(outcome).toMatchObject({ releaseDraft: true, deployed: false })
  // the outcome still carries what the server said, for the summary
  expect(outcome.events[0]).toEqual({ name: 'begin', ms: 1700000000000 })
  expect(outcome.events.map((e) => e.name).sort()).toEqual([
    'begin',
    'build',
    'built',
    'drafted',
    'pushed',
    'release',
    'sent'
  ])
  expect(outcome.history).toMatchObject([{ version: 'v1.4.0', result: 'failed-health' }])
  // for the summary: where it failed, and what serves
  expect(outcome.failedPhase).toBe('h: health shop-green')
  expect(outcome.serving).toEqual({ color: 'blue', version: 'v1.3.0' })
})

test.each([['color=purple version=v1.3.0'], ['color=blue version=--x'], ['color=blue']])(
  'a serving line that is not a color and a version is not taken: %s',
  async (line) => {
    const { deps } = fakes({
      out: `::bg-deploy-serving:: ${line}\n::bg-deploy-error:: x\n`,
      code: 1
    })
    const outcome: Outcome = { tags: [], deployed: false, events: [] }
    await expect(deploy(config(), ctx, deps, outcome)).rejects.toThrow('x')
    expect(outcome.serving).toBeUndefined()
  }
)

test.each([
  ['v1.3.0', 'ghcr.io/acme/shop:v1.3.0', ['registry retag v1.3.0 latest']],
  ['sha-abc1234', 'ghcr.io/acme/shop:sha-abc1234', ['registry retag sha-abc1234 latest']],
  ['v2.0.0-rc.1', 'ghcr.io/acme/shop:v2.0.0-rc.1', []]
])(
  'a rollback to %s builds, pushes and releases nothing, and moves latest unless a pre-release',
  async (version, image, retags) => {
    const { deps, calls } = fakes({ out: ok(version, image), code: 0 })
    const outcome: Outcome = { tags: [], deployed: false, events: [] }
    await deploy(config({ rollback: 'previous' }), ctx, deps, outcome)
    expect(calls).toEqual(['connect', 'server', ...retags, 'dispose'])
    expect(outcome.version).toBe(version)
  }
)

test('a server answer that is not a color writes nothing from it', async () => {
  const { deps, calls } = fakes({
    out: ok('v1.4.0', 'ghcr.io/acme/shop:v1.4.0').replace('green', '$(id)'),
    code: 0
  })
  const outcome: Outcome = { tags: [], deployed: false, events: [] }
  await expect(deploy(config(), ctx, deps, outcome)).rejects.toThrow(/malformed: color/)
  expect(outcome.color).toBeUndefined()
  expect(outcome.deployed).toBe(false)
  expect(calls.filter((c) => /retag|publish/.test(c))).toEqual([])
})

const D1 = `sha256:${'1'.repeat(64)}`
const D2 = `sha256:${'2'.repeat(64)}`

describe('build: false (an image pushed before)', () => {
  const pushed = (image: string) => config({ build: 'false', image })

  test('nothing is built: the digest is read, the version tagged on it, the server runs it by digest', async () => {
    const ref = `ghcr.io/acme/shop@${D1}`
    const { deps, calls } = fakes(
      { out: ok('v1.4.0', ref), code: 0 },
      { digests: { 'sha-c0ffee0': D1 } }
    )
    const outcome: Outcome = { tags: [], deployed: false, events: [] }
    await deploy(pushed('ghcr.io/acme/shop:sha-c0ffee0'), ctx, deps, outcome)
    expect(calls.filter((c) => c.startsWith('docker'))).toEqual([])
    expect(calls).toContain(`registry retag ${D1} v1.4.0`)
    expect(calls.indexOf(`registry retag ${D1} v1.4.0`)).toBeLessThan(calls.indexOf('server'))
    expect(calls.slice(-3)).toEqual([`registry retag ${D1} latest`, 'release publish 1', 'dispose'])
    expect(outcome).toMatchObject({
      version: 'v1.4.0',
      image: ref,
      digest: D1,
      deployed: true,
      tags: ['ghcr.io/acme/shop:v1.4.0', 'ghcr.io/acme/shop:latest']
    })
  })

  test('the next environment (the version names this digest already) tags nothing again', async () => {
    const ref = `ghcr.io/acme/shop@${D1}`
    const { deps, calls } = fakes(
      { out: ok('v1.4.0', ref), code: 0 },
      { digests: { [D1]: D1, 'v1.4.0': D1 } }
    )
    const outcome: Outcome = { tags: [], deployed: false, events: [] }
    await deploy(pushed(ref), ctx, deps, outcome)
    expect(calls.filter((c) => c.includes('retag'))).toEqual([`registry retag ${D1} latest`])
    expect(outcome).toMatchObject({ version: 'v1.4.0', image: ref, deployed: true })
  })

  test('a version tag naming another image: deployed under the sha- name, no release, no tag moved', async () => {
    const ref = `ghcr.io/acme/shop@${D1}`
    const { deps, calls } = fakes(
      { out: ok('sha-c0ffee0', ref), code: 0 },
      { digests: { [D1]: D1, 'v1.4.0': D2 } }
    )
    const outcome: Outcome = { tags: [], deployed: false, events: [] }
    await deploy(pushed(ref), ctx, deps, outcome)
    expect(calls.filter((c) => c.includes('retag') || c.includes('release'))).toEqual([
      `registry retag ${D1} latest`
    ])
    expect(outcome.version).toBeUndefined()
    expect(outcome.image).toBe(ref)
  })

  test('an image that is not in the registry: the run stops before any server is touched', async () => {
    const { deps, calls } = fakes({ out: '', code: 0 }, { digests: {} })
    const outcome: Outcome = { tags: [], deployed: false, events: [] }
    await expect(deploy(pushed(`ghcr.io/acme/shop@${D1}`), ctx, deps, outcome)).rejects.toThrow(
      `ghcr.io/acme/shop@${D1} is not in ghcr.io. With build: false`
    )
    expect(calls).not.toContain('server')
    expect(calls.filter((c) => c.includes('retag') || c.includes('release'))).toEqual([])
  })
})
