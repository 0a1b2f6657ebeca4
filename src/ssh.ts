import { connect as tcpConnect } from 'node:net'
import type { Readable } from 'node:stream'
import { NodeSSH } from 'node-ssh'
import ssh2 from 'ssh2'
import type { Config } from './config.js'
import { fingerprintOf, hostKeyAlgorithms, verifyHostKey } from './hostkey.js'

export interface ExecResult {
  /** null when the remote command was killed by a signal or the connection was lost */
  code: number | null
  signal: string | null
}

/** The one remote capability the deploy needs: run a command with stdin, stream its output. */
export interface RemoteShell {
  exec(
    command: string,
    opts: {
      /** a string is sent and stdin closed; a stream stays open until it ends */
      stdin?: string | Readable
      onStdout: (chunk: Buffer) => void
      onStderr: (chunk: Buffer) => void
    }
  ): Promise<ExecResult>
  dispose(): void
}

export type SshConfig = Config['ssh']

/** The key type of the private key ('ssh-ed25519', 'ssh-rsa', ...); throws a message a user can act on. */
export function privateKeyType(cfg: Pick<SshConfig, 'privateKey' | 'passphrase'>): string {
  const parsed = ssh2.utils.parseKey(cfg.privateKey, cfg.passphrase)
  if (parsed instanceof Error) {
    const encrypted = /encrypted|passphrase|decrypt/i.test(parsed.message)
    throw new Error(
      encrypted
        ? `Input 'ssh-key' is encrypted and ${cfg.passphrase ? "'ssh-passphrase' does not open it" : "no 'ssh-passphrase' was given"} (${parsed.message}).`
        : `Input 'ssh-key' cannot be read as a private key (${parsed.message}). Expected an OpenSSH or PEM private key.`
    )
  }
  const key = Array.isArray(parsed) ? parsed[0] : parsed
  return (key as { type: string }).type
}

/** The SSH key type inside a public key blob. */
function blobType(blob: Buffer): string {
  const len = blob.readUInt32BE(0)
  return blob.subarray(4, 4 + len).toString()
}

/**
 * Connect with the host key pinned (unless insecure-ignore-host-key), keep-alive on, and a ready
 * timeout. Errors say what happened and what to do.
 */
export async function connectSsh(
  cfg: SshConfig,
  opts: { readyTimeoutMs?: number; warn?: (msg: string) => void } = {}
): Promise<RemoteShell> {
  const keyType = privateKeyType(cfg)
  const where = `${cfg.username}@${cfg.host}:${cfg.port}`
  let rejected: string | undefined
  const ssh = new NodeSSH()
  const algorithms = hostKeyAlgorithms(cfg.hostKeyPins)
  if (cfg.insecureIgnoreHostKey && cfg.hostKeyPins.length === 0)
    opts.warn?.(
      `insecure-ignore-host-key is true: the identity of ${cfg.host} is not checked, so a machine in the middle could receive the deploy. Pin it with host-fingerprint (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub).`
    )
  try {
    await ssh.connect({
      // Our own socket, for TCP_NODELAY: without it every step of the handshake waits out the
      // peer's delayed ACK (~40 ms each, 0.2 s a connect on loopback).
      sock: tcpConnect({ host: cfg.host, port: cfg.port, noDelay: true }),
      host: cfg.host,
      port: cfg.port,
      username: cfg.username,
      privateKey: cfg.privateKey,
      passphrase: cfg.passphrase,
      readyTimeout: opts.readyTimeoutMs ?? 20_000,
      keepaliveInterval: 10_000,
      keepaliveCountMax: 3,
      ...(algorithms
        ? { algorithms: { serverHostKey: algorithms as ssh2.ServerHostKeyAlgorithm[] } }
        : {}),
      hostVerifier: (key: Buffer | string) => {
        if (cfg.hostKeyPins.length === 0) return cfg.insecureIgnoreHostKey
        const blob = Buffer.isBuffer(key) ? key : Buffer.from(key)
        if (verifyHostKey(cfg.hostKeyPins, blob)) return true
        rejected = `SHA256:${fingerprintOf(blob)} (${blobType(blob)})`
        return false
      }
    })
  } catch (e) {
    ssh.dispose()
    throw explainConnectError(e as Error & { code?: string; level?: string }, {
      where,
      keyType,
      rejected,
      cfg
    })
  }
  return {
    async exec(command, o) {
      const r = await ssh.execCommand(command, {
        stdin: o.stdin,
        onStdout: o.onStdout,
        onStderr: o.onStderr
      })
      return { code: r.code, signal: r.signal }
    },
    dispose() {
      ssh.dispose()
    }
  }
}

function explainConnectError(
  e: Error & { code?: string; level?: string },
  c: { where: string; keyType: string; rejected?: string; cfg: SshConfig }
): Error {
  const m = e.message
  if (c.rejected)
    return new Error(
      `Host key verification failed for ${c.cfg.host}:${c.cfg.port}: the server presented ${c.rejected}, which matches none of the pinned keys (${c.cfg.hostKeyPins.map((p) => p.source).join(', ')}). Nothing was run on the server. If the server's key changed on purpose, update host-fingerprint with the output of \`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub\` on the server.`
    )
  if (e.code === 'ECONNREFUSED')
    return new Error(
      `Cannot connect to ${c.where}: connection refused. Check 'host' and 'port', and that sshd runs there.`
    )
  if (e.code === 'ENOTFOUND' || e.code === 'EAI_AGAIN')
    return new Error(
      `Cannot connect to ${c.where}: the host name '${c.cfg.host}' does not resolve. Check 'host'.`
    )
  if (e.code === 'ETIMEDOUT' || e.code === 'EHOSTUNREACH' || /timed out/i.test(m))
    return new Error(
      `Cannot connect to ${c.where}: ${/handshake/i.test(m) ? 'no SSH handshake' : 'no answer'} within the timeout. Check 'host' and 'port', and that a firewall lets the runner in.`
    )
  if (/authentication methods failed/i.test(m))
    return new Error(
      `The server refused authentication for ${c.where} with the ${c.keyType} key from 'ssh-key'. Add its public key (ssh-keygen -y -f KEYFILE) to ~${c.cfg.username}/.ssh/authorized_keys on the server, and check 'username'.`
    )
  if (/no matching.*host key/i.test(m) || /handshake failed/i.test(m))
    return new Error(
      `SSH handshake with ${c.where} failed: ${m}. The server offers none of the host key types pinned in host-fingerprint; pin the key it has (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub).`
    )
  return new Error(`SSH connection to ${c.where} failed: ${m}`)
}
