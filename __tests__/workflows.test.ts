import { readdirSync, readFileSync } from 'node:fs'
import { parse } from 'yaml'

const action = parse(readFileSync('action.yml', 'utf8')) as { inputs: Record<string, unknown> }
const dir = 'examples/workflows'

type Step = { uses?: string; with?: Record<string, unknown> }
type Workflow = {
  on: { push?: unknown; workflow_dispatch?: { inputs: Record<string, { description?: string }> } }
  jobs: Record<string, { concurrency?: { group: string }; environment?: string; steps: Step[] }>
}

const files = readdirSync(dir).filter((f) => f.endsWith('.yml'))

test('there are example workflows', () => {
  expect(files.length).toBeGreaterThan(0)
})

test.each(files)('%s parses and passes only inputs that action.yml declares', (file) => {
  const wf = parse(readFileSync(`${dir}/${file}`, 'utf8')) as Workflow
  const steps = Object.values(wf.jobs).flatMap((j) =>
    j.steps.filter((s) => s.uses?.includes('bg-deploy'))
  )
  expect(steps.length).toBeGreaterThan(0)
  for (const step of steps)
    for (const name of Object.keys(step.with ?? {}))
      expect(Object.keys(action.inputs)).toContain(name)
})

test('deploy.yml: push deploys, workflow_dispatch offers a described rollback box, environments queue', () => {
  const wf = parse(readFileSync(`${dir}/deploy.yml`, 'utf8')) as Workflow
  expect(wf.on.push).toBeDefined()
  expect(wf.on.workflow_dispatch!.inputs.rollback!.description).toMatch(/previous.*v1\.3\.2/)
  for (const job of Object.values(wf.jobs)) {
    expect(job.concurrency!.group).toMatch(/^deploy-/)
    expect(['staging', 'production']).toContain(job.environment)
    expect(job.steps.find((s) => s.uses?.includes('bg-deploy'))!.with!.rollback).toBe(
      '${{ inputs.rollback }}'
    )
  }
})
