// The example workflows, README's Quick start and this repository's own workflows, checked as GitHub
// checks them (@actions/workflow-parser, GitHub's workflow schema) and against action.yml.
import { readdirSync, readFileSync } from 'node:fs'
import { parse } from 'yaml'
import { NoOperationTraceWriter, parseWorkflow } from '@actions/workflow-parser'
import { parseAction } from '@actions/workflow-parser/actions/action-parser'

const action = parse(readFileSync('action.yml', 'utf8')) as { inputs: Record<string, unknown> }
const dir = 'examples/workflows'

type Step = { uses?: string; with?: Record<string, unknown>; run?: string; id?: string }
type Job = {
  if?: string
  needs?: string | string[]
  concurrency?: { group: string; 'cancel-in-progress'?: boolean; queue?: string }
  environment?: string
  'timeout-minutes'?: number
  outputs?: Record<string, string>
  permissions?: Record<string, string>
  steps: Step[]
}
type Workflow = {
  on: {
    push?: unknown
    workflow_dispatch?: {
      inputs: Record<
        string,
        { description?: string; type?: string; options?: string[]; required?: boolean }
      >
    }
  }
  permissions?: Record<string, string>
  jobs: Record<string, Job>
}

const files = readdirSync(dir).filter((f) => f.endsWith('.yml'))

/** GitHub's own errors for a workflow file: [] when it would run. */
function schemaErrors(name: string, content: string): string[] {
  const r = parseWorkflow({ name, content }, new NoOperationTraceWriter())
  return r.context.errors.getErrors().map((e) => e.message)
}

/** The ```yaml blocks of a markdown page that are whole workflows (they have `jobs:`). */
function workflowsOf(page: string): [string, string][] {
  return [...readFileSync(page, 'utf8').matchAll(/```yaml\n([\s\S]*?)```/g)]
    .map((m) => m[1]!)
    .filter((y) => /^jobs:/m.test(y))
    .map((y, i) => [`${page} workflow ${i + 1}`, y])
}
const readmeWorkflows = () => workflowsOf('README.md')
const docsWorkflows = () =>
  readdirSync('docs')
    .filter((f) => f.endsWith('.md'))
    .flatMap((f) => workflowsOf(`docs/${f}`))

test('there are example workflows', () => {
  expect(files.length).toBeGreaterThan(0)
})

test('the schema check catches what GitHub refuses', () => {
  const broken = `on: push
jobs:
  a:
    runs-on: ubuntu-latest
    timeout-minutes: soon
    concurrency: { group: x, queue: all }
    steps:
      - uses: actions/checkout@v6
        run: echo both
`
  expect(schemaErrors('broken.yml', broken).length).toBeGreaterThanOrEqual(3)
  const dispatch = `on:
  workflow_dispatch:
    inputs:
      action: { type: checkbox }
jobs:
  a: { runs-on: ubuntu-latest, steps: [{ run: 'true' }] }
`
  expect(schemaErrors('dispatch.yml', dispatch)).not.toEqual([])
})

test.each([
  ...files.map((f) => [`${dir}/${f}`, readFileSync(`${dir}/${f}`, 'utf8')]),
  ...readdirSync('.github/workflows').map((f) => [
    `.github/workflows/${f}`,
    readFileSync(`.github/workflows/${f}`, 'utf8')
  ]),
  ...readmeWorkflows(),
  ...docsWorkflows()
])('%s is a valid workflow by GitHub’s schema', (name, content) => {
  expect(schemaErrors(name, content)).toEqual([])
})

test('README has the Quick start as a whole workflow', () => {
  expect(readmeWorkflows().length).toBeGreaterThan(0)
})

test('action.yml is a valid action by GitHub’s schema, running on node24', () => {
  const r = parseAction(
    { name: 'action.yml', content: readFileSync('action.yml', 'utf8') },
    new NoOperationTraceWriter()
  )
  expect(r.context.errors.getErrors().map((e) => e.message)).toEqual([])
  expect(parse(readFileSync('action.yml', 'utf8')).runs).toEqual({
    using: 'node24',
    main: 'dist/index.js'
  })
})

test.each([
  ...files.map((f) => [f, readFileSync(`${dir}/${f}`, 'utf8')]),
  ...readmeWorkflows(),
  ...docsWorkflows()
])('%s passes only inputs that action.yml declares', (_, text) => {
  const wf = parse(text) as Workflow
  const steps = Object.values(wf.jobs).flatMap((j) =>
    j.steps.filter((s) => s.uses?.includes('bg-deploy'))
  )
  expect(steps.length).toBeGreaterThan(0)
  for (const step of steps)
    for (const name of Object.keys(step.with ?? {}))
      expect(Object.keys(action.inputs)).toContain(name)
})

test.each([
  ...files.map((f) => [f, readFileSync(`${dir}/${f}`, 'utf8')]),
  ...readmeWorkflows(),
  ...docsWorkflows()
])('%s: a lowercase image, packages: write for ghcr.io, a time limit on every job', (_, text) => {
  const wf = parse(text) as Workflow
  for (const job of Object.values(wf.jobs)) {
    for (const step of job.steps.filter((s) => s.uses?.includes('bg-deploy'))) {
      const image = String(step.with?.image ?? '')
      expect(image).not.toContain('github.repository')
      expect(image.replace(/\$\{\{[^}]*\}\}/g, '')).toBe(
        image.replace(/\$\{\{[^}]*\}\}/g, '').toLowerCase()
      )
    }
  }
  if (text.includes('ghcr.io'))
    for (const job of Object.values(wf.jobs).filter((j) => j.steps.some((s) => s.uses)))
      if (job.steps.some((s) => /bg-deploy|build-push/.test(s.uses ?? '')))
        expect((job.permissions ?? wf.permissions)?.packages).toBe('write')
  for (const job of Object.values(wf.jobs)) expect(job['timeout-minutes']).toBeGreaterThan(0)
})

describe('deploy.yml', () => {
  const wf = parse(readFileSync(`${dir}/deploy.yml`, 'utf8')) as Workflow
  const inputs = wf.on.workflow_dispatch!.inputs

  test('by hand: a choice of deploy or rollback, an optional version, an environment', () => {
    expect(inputs.action).toMatchObject({ type: 'choice', options: ['deploy', 'rollback'] })
    expect(inputs.version!.required).toBe(false)
    expect(inputs.version!.description).toMatch(/v1\.3\.2/)
    expect(inputs.environment!.type).toBe('environment')
  })

  test('builds once, then deploys that digest to staging, then production', () => {
    const build = wf.jobs.build!
    expect(build.steps.find((s) => s.id === 'push')!.uses).toMatch(/^docker\/build-push-action@/)
    expect(build.outputs!.digest).toBe('${{ steps.push.outputs.digest }}')
    for (const name of ['staging', 'production']) {
      const job = wf.jobs[name]!
      expect(job.environment).toBe(name)
      const step = job.steps.find((s) => s.uses?.includes('bg-deploy'))!
      expect(step.with).toMatchObject({
        build: false,
        image: '${{ needs.build.outputs.image }}@${{ needs.build.outputs.digest }}'
      })
    }
    expect(wf.jobs.production!.needs).toContain('staging')
  })

  test('deploys to one environment queue instead of cancelling one another', () => {
    for (const job of Object.values(wf.jobs).filter((j) => j.concurrency)) {
      expect(job.concurrency!.group).toMatch(/^deploy-/)
      expect(job.concurrency).toMatchObject({ 'cancel-in-progress': false, queue: 'max' })
    }
    // the build is never in a deploy's queue: every version gets its image
    expect(wf.jobs.build!.concurrency).toBeUndefined()
  })

  test('a rollback builds nothing and goes to the environment chosen', () => {
    const job = wf.jobs.rollback!
    expect(job.if).toContain("inputs.action == 'rollback'")
    expect(job.environment).toBe('${{ inputs.environment }}')
    const step = job.steps.find((s) => s.uses?.includes('bg-deploy'))!
    expect(step.with!.rollback).toBe("${{ inputs.version || 'previous' }}")
  })
})

test.each([
  ...files.map((f) => [f, readFileSync(`${dir}/${f}`, 'utf8')]),
  ...readmeWorkflows(),
  ...docsWorkflows()
])(
  '%s: the servers never get GITHUB_TOKEN; each job asks for its own permissions; third-party actions pinned by commit',
  (_, text) => {
    const wf = parse(text) as Workflow
    const jobs = Object.values(wf.jobs)
    for (const step of jobs.flatMap((j) => j.steps)) {
      const uses = step.uses ?? ''
      if (uses.includes('bg-deploy')) {
        // a read-only pull credential for the servers, never the push one
        expect(step.with?.['push-credential-to-servers']).toBeUndefined()
        if (step.with?.['registry-password'])
          expect(String(step.with?.['pull-registry-password'])).toMatch(/secrets\./)
      } else if (uses && !uses.startsWith('actions/') && !uses.startsWith('./'))
        expect(uses).toMatch(/@[0-9a-f]{40}$/)
    }
    // several jobs: nothing at the top, each job its own
    if (jobs.length > 1) {
      expect(wf.permissions).toEqual({})
      for (const job of jobs) expect(job.permissions).toBeDefined()
    } else expect(jobs[0]!.permissions ?? wf.permissions).toBeDefined()
  }
)

test('the release workflow: checks in a job that cannot write, no persisted credential, the token in one step only', () => {
  const wf = parse(readFileSync('.github/workflows/release.yml', 'utf8')) as Workflow
  expect(wf.permissions).toEqual({})
  expect(wf.jobs.checks!.permissions).toEqual({ contents: 'read' })
  expect(wf.jobs.checks!.steps.map((s) => s.run ?? '')).toContain('sudo npm test')
  expect(wf.jobs.release!.needs).toBe('checks')
  const steps = Object.values(wf.jobs).flatMap((j) => j.steps)
  for (const s of steps.filter((x) => x.uses?.startsWith('actions/checkout')))
    expect(s.with?.['persist-credentials']).toBe(false)
  const withToken = steps.filter((s) => /github\.token|secrets\./.test(JSON.stringify(s)))
  expect(withToken).toHaveLength(1)
  expect(withToken[0]!.run).toMatch(/push[\s\S]*gh release create/)
  // release.sh, which runs the project's code, gets no token and pushes nothing itself
  const tag = steps.find((s) => s.run?.includes('scripts/release.sh'))!
  expect(JSON.stringify(tag)).not.toMatch(/RELEASE_REMOTE|token/i)
})
