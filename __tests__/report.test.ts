import {
  notification,
  recordDeployment,
  resultOf,
  versionChange,
  type DeploymentsApi
} from '../src/report.js'
import type { Config } from '../src/config.js'
import type { RunContext } from '../src/context.js'
import type { Outcome } from '../src/run.js'

const o = (x: Partial<Outcome>): Outcome => ({ tags: [], deployed: false, events: [], ...x })
const ctx = {
  actor: 'octocat',
  runUrl: 'https://github.com/acme/shop/actions/runs/1',
  sha: 'a'.repeat(40)
} as RunContext
const config = { app: { name: 'shop' } } as Config

test('the result in one word', () => {
  expect(resultOf(o({ deployed: true }), false)).toBe('deployed')
  expect(resultOf(o({ deployed: true }), true)).toBe('rolled-back')
  expect(resultOf(o({ prepared: true }), false)).toBe('prepared')
  expect(resultOf(o({ error: 'x' }), false)).toBe('failed')
  expect(
    resultOf(
      o({
        error: 'the watch found v2 bad',
        history: [{ result: 'rolled-back-after-watch' } as NonNullable<Outcome['history']>[number]]
      }),
      false
    )
  ).toBe('switched-back')
  expect(resultOf(o({ error: 'the canary switched back from v2: …' }), false)).toBe('switched-back')
})

test('versions as people read them', () => {
  expect(versionChange(o({ version: 'v1.4.0', previousVersion: 'v1.3.0' }))).toBe('v1.3.0 → v1.4.0')
  expect(versionChange(o({ version: 'v1.4.0' }))).toBe('v1.4.0')
  expect(versionChange(o({ version: 'v1.4.0', previousVersion: 'v1.4.0' }))).toBe('v1.4.0')
  const m = notification(
    config,
    ctx,
    o({ version: 'v1.4.0', previousVersion: 'v1.3.0', error: 'it broke\nmore' }),
    'switched-back',
    41_200,
    'https://shop.example.com'
  )
  expect(m.text).toBe(
    '❌ shop v1.3.0 → v1.4.0: switched back by the watch by octocat in 41 s\n> it broke\n<https://github.com/acme/shop/actions/runs/1|the run> · <https://shop.example.com|https://shop.example.com>'
  )
})

test('the record: the tag when the version is released, else the commit; a switch back is a failure naming the version serving', async () => {
  const calls: unknown[] = []
  const api: DeploymentsApi = {
    create: async (p) => (calls.push(['create', p]), { id: 7 }),
    status: async (id, p) => void calls.push(['status', id, p])
  }
  await recordDeployment(api, {
    environment: 'production',
    url: 'https://shop.example.com',
    ctx,
    outcome: o({
      version: 'v2.0.0',
      previousVersion: 'v1.0.0',
      error: 'the watch found v2.0.0 bad'
    }),
    result: 'switched-back',
    tagExists: async () => false
  })
  expect(calls).toEqual([
    [
      'create',
      expect.objectContaining({
        ref: 'a'.repeat(40),
        description: 'switched back by the watch: v1.0.0 → v2.0.0'
      })
    ],
    [
      'status',
      7,
      {
        state: 'failure',
        description: 'switched back to v1.0.0: the watch found v2.0.0 bad',
        log_url: ctx.runUrl
      }
    ]
  ])
  calls.length = 0
  await recordDeployment(api, {
    environment: 'production',
    ctx,
    outcome: o({ version: 'v1.0.0', previousVersion: 'v2.0.0', deployed: true }),
    result: 'rolled-back',
    tagExists: async (t) => t === 'v1.0.0'
  })
  expect(calls[0]).toEqual(['create', expect.objectContaining({ ref: 'v1.0.0' })])
  expect(calls[1]).toEqual(['status', 7, expect.objectContaining({ state: 'success' })])
})
