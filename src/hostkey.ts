import { createHash, createHmac } from 'node:crypto'

/** A pinned server host key: a SHA256 fingerprint, or the key itself from known_hosts. */
export interface HostKeyPin {
  /** base64 SHA256 of the key blob, without = padding (as OpenSSH prints it). */
  sha256: string
  /** SSH host key algorithms that can present this key; empty when unknown. */
  algorithms: string[]
  /** Where the pin came from, for messages. */
  source: string
}

const ALGORITHMS: Record<string, (bits: string) => string[]> = {
  ED25519: () => ['ssh-ed25519'],
  RSA: () => ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'],
  ECDSA: (bits) =>
    bits
      ? [`ecdsa-sha2-nistp${bits}`]
      : ['ecdsa-sha2-nistp256', 'ecdsa-sha2-nistp384', 'ecdsa-sha2-nistp521'],
  DSA: () => ['ssh-dss']
}

function algorithmsOfKeyType(keyType: string): string[] {
  if (keyType === 'ssh-rsa') return ALGORITHMS.RSA!('')
  return [keyType]
}

/** OpenSSH's fingerprint of a key blob: base64(sha256(blob)) without padding. */
export function fingerprintOf(blob: Buffer): string {
  return createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')
}

/**
 * Parse `host-fingerprint` lines (`256 SHA256:… comment (ED25519)` as `ssh-keygen -lf` prints, or a
 * bare `SHA256:…`) and `known-hosts` lines (entries for host:port only).
 */
export function parseHostKeyPins(
  fingerprints: string | undefined,
  knownHosts: string | undefined,
  host: string,
  port: number
): HostKeyPin[] {
  const pins: HostKeyPin[] = []
  for (const [i, raw] of (fingerprints ?? '').split('\n').entries()) {
    const line = raw.trim()
    if (line === '' || line.startsWith('#')) continue
    if (/\bMD5:/.test(line))
      throw new Error(
        `Invalid host-fingerprint line ${i + 1}: MD5 fingerprints are not accepted. Expected a SHA256:… fingerprint as printed by \`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub\`.`
      )
    const m = /(?:^|\s)SHA256:([A-Za-z0-9+/]{43})=?(?:\s|$)/.exec(line)
    if (!m)
      throw new Error(
        `Invalid host-fingerprint line ${i + 1} '${line}'. Expected a SHA256:… fingerprint (43 base64 characters) as printed by \`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub\`.`
      )
    const type = /\((ED25519|RSA|ECDSA|DSA)\)\s*$/i.exec(line)?.[1]?.toUpperCase()
    const bits = /^(\d+)\s/.exec(line)?.[1] ?? ''
    pins.push({
      sha256: m[1]!,
      algorithms: type ? ALGORITHMS[type]!(type === 'ECDSA' ? bits : '') : [],
      source: `host-fingerprint line ${i + 1}`
    })
  }
  if (knownHosts !== undefined && knownHosts.trim() !== '') {
    let entries = 0
    for (const [i, raw] of knownHosts.split('\n').entries()) {
      const line = raw.trim()
      if (line === '' || line.startsWith('#')) continue
      const fields = line.split(/\s+/)
      if (fields[0]!.startsWith('@')) continue // @revoked / @cert-authority: not supported as pins
      const [patterns, keyType, key] = fields
      if (!keyType || !key || !/^[A-Za-z0-9+/]+=*$/.test(key))
        throw new Error(
          `Invalid known-hosts line ${i + 1}. Expected 'HOST KEYTYPE BASE64KEY' as printed by \`ssh-keyscan -p PORT HOST\`.`
        )
      entries++
      if (!hostMatches(patterns!, host, port)) continue
      pins.push({
        sha256: fingerprintOf(Buffer.from(key, 'base64')),
        algorithms: algorithmsOfKeyType(keyType),
        source: `known-hosts line ${i + 1}`
      })
    }
    if (entries > 0 && !pins.some((p) => p.source.startsWith('known-hosts')))
      throw new Error(
        `Input 'known-hosts' has no entry for ${port === 22 ? host : `[${host}]:${port}`}. Expected lines from \`ssh-keyscan ${port === 22 ? '' : `-p ${port} `}${host}\`.`
      )
  }
  return pins
}

/** Does a known_hosts host field match host:port (plain, [host]:port, wildcards, negation, hashed)? */
export function hostMatches(patterns: string, host: string, port: number): boolean {
  const name = port === 22 ? host : `[${host}]:${port}`
  if (patterns.startsWith('|1|')) {
    const [, , salt, hash] = patterns.split('|')
    if (!salt || !hash) return false
    return createHmac('sha1', Buffer.from(salt, 'base64')).update(name).digest('base64') === hash
  }
  let matched = false
  for (const p of patterns.split(',')) {
    const negated = p.startsWith('!')
    const pattern = negated ? p.slice(1) : p
    const re = new RegExp(
      '^' +
        pattern
          .replace(/[.+^${}()|\\]/g, '\\$&')
          .replace(/\[/g, '\\[')
          .replace(/\]/g, '\\]')
          .replace(/\*/g, '.*')
          .replace(/\?/g, '.') +
        '$',
      'i'
    )
    if (re.test(name)) {
      if (negated) return false
      matched = true
    }
  }
  return matched
}

/** The host key algorithms to offer, so that the server presents a key we have pinned. */
export function hostKeyAlgorithms(pins: HostKeyPin[]): string[] | undefined {
  if (pins.length === 0 || pins.some((p) => p.algorithms.length === 0)) return undefined
  return [...new Set(pins.flatMap((p) => p.algorithms))]
}

/** True when the presented key blob matches one of the pins. */
export function verifyHostKey(pins: HostKeyPin[], blob: Buffer): boolean {
  const fp = fingerprintOf(blob)
  return pins.some((p) => p.sha256 === fp)
}
