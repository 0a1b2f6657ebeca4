// Build once, deploy many (build: false), end to end: a "build job" pushes the image; the action
// deploys that digest to one environment under load, then to another, which runs the identical
// image. Real dockerd, registry, sshd and nginx.
import {
  Load,
  appFixture,
  commitVersion,
  deployApp,
  docker,
  expectOk,
  httpGet,
  registryDigest,
  settled,
  visibleLog,
  type Services
} from './helpers.js'

const fixture = appFixture()
let svc: Services
beforeAll(() => {
  svc = fixture.services()
})

/** What docker/build-push-action does in its own job: build and push, answer the digest. */
async function buildJob(image: string, ws: string, tag: string): Promise<string> {
  docker('build', '-q', '-t', `${image}:${tag}`, ws)
  docker('push', '-q', `${image}:${tag}`)
  const repository = image.slice(svc.registry.length + 1)
  const digest = await registryDigest(svc.registry, repository, tag)
  expect(digest).toMatch(/^sha256:[a-f0-9]{64}$/)
  return digest!
}

/** The image a color's container was created from, and the reference it was run by. */
function running(container: string): { id: string; ref: string } {
  const [id, ref] = docker('inspect', '-f', '{{.Image}} {{.Config.Image}}', container)
    .trim()
    .split(' ')
  return { id: id!, ref: ref! }
}

test('build: false deploys the pushed digest to staging under load, then production runs the identical image', async () => {
  const staging = fixture.newApp('bos', { version: 'v1.0.0' })
  const first = await deployApp(staging)
  expectOk(first)
  expect(visibleLog(first)).toContain('::group::Build') // what build: false must not do
  commitVersion(staging, { version: 'v2.0.0' })
  const image = staging.inputs.image!
  const repository = image.slice(svc.registry.length + 1)
  const digest = await buildJob(image, staging.ws, 'ci-build')
  const ref = `${image}@${digest}`

  const load = await new Load().start(staging.url)
  const run = await deployApp(staging, { inputs: { build: 'false', image: ref } })
  const stats = await load.stop()
  expectOk(run)
  expect(visibleLog(run)).not.toContain(`::group::Build`)
  expect(visibleLog(run)).toContain(`Deploying ${ref} (pushed before, not built here)`)
  expect(run.outputs).toMatchObject({
    deployed: 'true',
    version: 'v2.0.0',
    image: ref,
    digest,
    tags: `${image}:v2.0.0\n${image}:latest`
  })
  expect(stats.non2xx).toBe(0)
  expect(stats.errors).toBe(0)
  expect(stats.versions['v2.0.0']!.count).toBeGreaterThan(0)
  expect((await httpGet(staging.url)).body).toBe('v2.0.0\n')
  // the version and latest tags name the digest the build job pushed
  expect(await registryDigest(svc.registry, repository, 'v2.0.0')).toBe(digest)
  expect(await registryDigest(svc.registry, repository, 'latest')).toBe(digest)
  settled(staging)
  const onStaging = running(`${staging.name}-green`)
  expect(onStaging.ref).toBe(ref)

  // production: the same commit, the same digest; nothing is tagged again
  const production = fixture.newApp('bop', { version: 'v1.0.0' })
  expectOk(await deployApp(production))
  commitVersion(production, { version: 'v2.0.0' })
  const prod = await deployApp(production, { inputs: { build: 'false', image: ref } })
  expectOk(prod)
  expect(prod.outputs).toMatchObject({ version: 'v2.0.0', image: ref, digest })
  expect(visibleLog(prod)).not.toContain('now names sha256')
  settled(production)
  const onProduction = running(`${production.name}-green`)
  expect(onProduction).toEqual(onStaging)
  expect((await httpGet(production.url)).body).toBe('v2.0.0\n')
}, 240_000)

test('build: false with an image that was never pushed fails before the server is touched; v1 keeps serving', async () => {
  const a = fixture.newApp('bon', { version: 'v1.0.0' })
  expectOk(await deployApp(a))
  commitVersion(a, { version: 'v2.0.0' })
  const missing = `${a.inputs.image}@sha256:${'0'.repeat(64)}`
  const run = await deployApp(a, { inputs: { build: 'false', image: missing } })
  expect(run.code).not.toBe(0)
  expect(visibleLog(run)).toContain(
    `::error title=bg-deploy failed%3A reading the pushed image from the registry::${missing} is not in ${svc.registry}. With build: false`
  )
  expect(visibleLog(run)).not.toContain('bg-deploy-stage')
  expect((await httpGet(a.url)).body).toBe('v1.0.0\n')
}, 120_000)
