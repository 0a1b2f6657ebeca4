import { maskSecrets } from '../src/main.js'

/** The values registered with the log masker (`::add-mask::` commands) while `fn` runs. */
function masked(fn: () => void): string[] {
  const out: string[] = []
  const write = process.stdout.write.bind(process.stdout)
  process.stdout.write = ((chunk: string | Uint8Array) => {
    out.push(chunk.toString())
    return true
  }) as typeof process.stdout.write
  try {
    fn()
  } finally {
    process.stdout.write = write
  }
  return out
    .join('')
    .split('\n')
    .filter((l) => l.startsWith('::add-mask::'))
    .map((l) => l.slice('::add-mask::'.length))
}

test('maskSecrets registers each secret whole, each of its lines, and each env value as dotenv reads it', () => {
  const inputs: Record<string, string> = {
    'ssh-key': '-----BEGIN KEY-----\nAAAAline1\nBBBBline2\n-----END KEY-----',
    env: 'A=plainvalue\nPEM="-----BEGIN X-----\\nCCCCline3\nDDDDline4\n-----END X-----"\nB=on',
    'pull-registry-password': 'pullsecret'
  }
  const got = masked(() => maskSecrets((n) => inputs[n] ?? ''))
  for (const part of [
    'AAAAline1',
    'BBBBline2',
    'plainvalue',
    'CCCCline3',
    'DDDDline4',
    'pullsecret'
  ])
    expect(got).toContain(part)
  // the value as dotenv reads it (the \n escape turned into a line break), escaped for the command
  expect(got).toContain('-----BEGIN X-----%0ACCCCline3%0ADDDDline4%0A-----END X-----')
  // too short to mask without hiding every 'on' in the log
  expect(got).not.toContain('on')
})
