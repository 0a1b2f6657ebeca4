import { execFileSync } from 'node:child_process'
import { createHmac, generateKeyPairSync } from 'node:crypto'
import { mkdtempSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { connectSsh, type SshConfig } from '../src/ssh.js'
import {
  fingerprintOf,
  hostKeyAlgorithms,
  hostMatches,
  parseHostKeyPins,
  verifyHostKey
} from '../src/hostkey.js'

// An ed25519 public key blob in SSH wire format: string "ssh-ed25519" + string key
function ed25519Blob(): Buffer {
  const der = generateKeyPairSync('ed25519').publicKey.export({ format: 'der', type: 'spki' })
  const raw = der.subarray(der.length - 32)
  const str = (b: Buffer) => Buffer.concat([Buffer.from([0, 0, 0, b.length]), b])
  return Buffer.concat([str(Buffer.from('ssh-ed25519')), str(raw)])
}

test('fingerprints as ssh-keygen -lf prints them pin the key and its algorithm', () => {
  const blob = ed25519Blob()
  const fp = fingerprintOf(blob)
  const pins = parseHostKeyPins(
    `256 SHA256:${fp} root@host (ED25519)\n3072 SHA256:${'A'.repeat(43)} x (RSA)`,
    undefined,
    'h',
    22
  )
  expect(pins.map((p) => p.algorithms)).toEqual([
    ['ssh-ed25519'],
    ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa']
  ])
  expect(verifyHostKey(pins, blob)).toBe(true)
  expect(verifyHostKey(pins, ed25519Blob())).toBe(false)
  expect(hostKeyAlgorithms(pins)).toEqual([
    'ssh-ed25519',
    'rsa-sha2-512',
    'rsa-sha2-256',
    'ssh-rsa'
  ])
})

test('a bare fingerprint does not restrict the algorithms', () => {
  const pins = parseHostKeyPins(`SHA256:${'B'.repeat(43)}`, undefined, 'h', 22)
  expect(hostKeyAlgorithms(pins)).toBeUndefined()
})

test('known_hosts entries for the host and port become pins; others are ignored', () => {
  const blob = ed25519Blob()
  const b64 = blob.toString('base64')
  const kh = `# comment\nother.example ssh-ed25519 ${b64}\n[deploy.example]:2222 ssh-ed25519 ${b64}\n`
  const pins = parseHostKeyPins(undefined, kh, 'deploy.example', 2222)
  expect(pins).toEqual([
    { sha256: fingerprintOf(blob), algorithms: ['ssh-ed25519'], source: 'known-hosts line 3' }
  ])
  expect(() => parseHostKeyPins(undefined, kh, 'deploy.example', 22)).toThrow(
    /no entry for deploy.example/
  )
})

test.each([
  ['deploy.example', 'deploy.example', 22, true],
  ['a,deploy.example', 'DEPLOY.example', 22, true],
  ['*.example', 'deploy.example', 22, true],
  ['*.example,!deploy.example', 'deploy.example', 22, false],
  ['deploy.example', 'deploy.example', 2222, false],
  ['[deploy.example]:2222', 'deploy.example', 2222, true],
  ['10.0.0.?', '10.0.0.5', 22, true]
])('hostMatches(%s, %s, %d) = %s', (pattern, host, port, expected) => {
  expect(hostMatches(pattern, host, port)).toBe(expected)
})

test('hashed known_hosts names match', () => {
  const salt = Buffer.from('0123456789abcdefghij')
  const hash = createHmac('sha1', salt).update('[h.example]:2222').digest('base64')
  expect(hostMatches(`|1|${salt.toString('base64')}|${hash}`, 'h.example', 2222)).toBe(true)
  expect(hostMatches(`|1|${salt.toString('base64')}|${hash}`, 'h.example', 22)).toBe(false)
})

test('insecure-ignore-host-key warns for an unpinned bastion too, even when the server behind it is pinned', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'bgd-jump-'))
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', path.join(dir, 'k')])
  const privateKey = readFileSync(path.join(dir, 'k'), 'utf8')
  const target = {
    host: '127.0.0.1',
    port: 1,
    username: 'u',
    privateKey,
    insecureIgnoreHostKey: true,
    hostKeyPins: [] as SshConfig['hostKeyPins']
  }
  const warnings: string[] = []
  const pinned = parseHostKeyPins(`SHA256:${'A'.repeat(43)}`, undefined, '127.0.0.1', 1)
  await expect(
    connectSsh(
      { ...target, hostKeyPins: pinned, connectTimeout: 2, jump: { ...target, host: '127.0.0.2' } },
      { warn: (m) => warnings.push(m) }
    )
  ).rejects.toThrow()
  expect(warnings).toEqual([
    expect.stringMatching(
      /the identity of the bastion 127\.0\.0\.2 \(proxy-jump\) is not checked, though 127\.0\.0\.1 behind it is pinned/
    )
  ])
})
