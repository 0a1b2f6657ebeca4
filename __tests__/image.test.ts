import { existsSync } from 'node:fs'
import {
  buildAndPush,
  buildArgs,
  imageLabels,
  loginArgs,
  parsePushDigest,
  pushArgs
} from '../src/image.js'
import type { Runner, RunResult } from '../src/runner.js'

const plan = {
  refs: ['ghcr.io/acme/shop:v1.4.0', 'ghcr.io/acme/shop:latest'],
  labels: imageLabels({ version: 'v1.4.0', sha: 'abc', sourceUrl: 'https://github.com/acme/shop' })
}

test('docker build argv: file, both tags, OCI labels, build args, context last', () => {
  expect(
    buildArgs(
      { dockerfile: 'docker/Dockerfile', buildArgs: ['A=1', 'B=x y'], context: 'app' },
      plan
    )
  ).toEqual([
    'build',
    '--file',
    'docker/Dockerfile',
    '--tag',
    'ghcr.io/acme/shop:v1.4.0',
    '--tag',
    'ghcr.io/acme/shop:latest',
    '--label',
    'org.opencontainers.image.source=https://github.com/acme/shop',
    '--label',
    'org.opencontainers.image.revision=abc',
    '--label',
    'org.opencontainers.image.version=v1.4.0',
    '--build-arg',
    'A=1',
    '--build-arg',
    'B=x y',
    '--',
    'app'
  ])
})

test('no version label without a version', () => {
  expect(Object.keys(imageLabels({ sha: 's', sourceUrl: 'u' }))).not.toContain(
    'org.opencontainers.image.version'
  )
})

test('login reads the password from stdin; push and login end options with --', () => {
  expect(loginArgs('ghcr.io', 'bot')).toEqual([
    'login',
    '--username',
    'bot',
    '--password-stdin',
    '--',
    'ghcr.io'
  ])
  expect(pushArgs('r:t')).toEqual(['push', '--', 'r:t'])
})

test('parsePushDigest', () => {
  const d = 'sha256:' + 'a'.repeat(64)
  expect(parsePushDigest(`abc: Pushed\nv1: digest: ${d} size: 943\n`)).toBe(d)
  expect(parsePushDigest('nothing')).toBeUndefined()
})

class RecordingRunner implements Runner {
  calls: { cmd: string; args: string[]; input?: string; env?: Record<string, string> }[] = []
  constructor(private readonly answer: (args: string[]) => Partial<RunResult> = () => ({})) {}
  async run(
    cmd: string,
    args: string[],
    opts?: { input?: string; env?: Record<string, string> }
  ): Promise<RunResult> {
    this.calls.push({ cmd, args, input: opts?.input, env: opts?.env })
    return { code: 0, stdout: '', stderr: '', ...this.answer(args) }
  }
}

const config = {
  dockerfile: 'Dockerfile',
  buildArgs: [],
  context: '.',
  registry: 'ghcr.io'
}

test('buildAndPush builds once, then logs in with the password on stdin and pushes each ref', async () => {
  const d = 'sha256:' + 'b'.repeat(64)
  const runner = new RecordingRunner((args) =>
    args[0] === 'push' ? { stdout: `x: digest: ${d} size: 1` } : {}
  )
  const r = await buildAndPush(
    runner,
    { ...config, registryUsername: 'bot', registryPassword: 's3cret' },
    plan,
    '/ws'
  )
  expect(runner.calls.map((c) => c.args[0])).toEqual(['build', 'login', 'push', 'push'])
  expect(runner.calls[1]!.input).toBe('s3cret')
  expect(runner.calls.flatMap((c) => c.args)).not.toContain('s3cret')
  expect(r).toEqual({ refs: plan.refs, digest: d })
  // login and push share a temporary Docker config, removed afterwards; the build uses the user's
  const dir = runner.calls[1]!.env?.DOCKER_CONFIG
  expect(dir).toMatch(/bg-deploy-docker-/)
  expect(runner.calls.map((c) => c.env?.DOCKER_CONFIG)).toEqual([undefined, dir, dir, dir])
  expect(existsSync(dir!)).toBe(false)
})

test('the temporary Docker config is removed when the push fails too', async () => {
  const runner = new RecordingRunner((args) =>
    args[0] === 'push' ? { code: 1, stderr: 'denied' } : {}
  )
  await expect(
    buildAndPush(
      runner,
      { ...config, registryUsername: 'bot', registryPassword: 's3cret' },
      plan,
      '/ws'
    )
  ).rejects.toThrow(/docker push.*denied/s)
  const dir = runner.calls[1]!.env?.DOCKER_CONFIG
  expect(dir).toBeDefined()
  expect(existsSync(dir!)).toBe(false)
})

test('buildAndPush skips login without credentials and stops at a failed build', async () => {
  const runner = new RecordingRunner((args) =>
    args[0] === 'build' ? { code: 1, stderr: 'no such file' } : {}
  )
  await expect(buildAndPush(runner, config, plan, '/ws')).rejects.toThrow(
    /docker build.*exit code 1:\nno such file/s
  )
  expect(runner.calls.map((c) => c.args[0])).toEqual(['build'])
})
