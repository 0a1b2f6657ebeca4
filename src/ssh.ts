import { connect as tcpConnect } from 'node:net'
import type { Duplex, Readable } from 'node:stream'
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
export function privateKeyType(
  cfg: Pick<SshConfig, 'privateKey' | 'passphrase' | 'agent'>,
  input: 'ssh-key' | 'proxy-jump-key' = 'ssh-key'
): string {
  if (!cfg.privateKey && cfg.agent) return 'ssh-agent'
  const parsed = ssh2.utils.parseKey(cfg.privateKey, cfg.passphrase)
  if (parsed instanceof Error) {
    const encrypted = /encrypted|passphrase|decrypt/i.test(parsed.message)
    throw new Error(
      encrypted
        ? `Input '${input}' is encrypted and ${cfg.passphrase ? "'ssh-passphrase' does not open it" : "no 'ssh-passphrase' was given"} (${parsed.message}).`
        : `Input '${input}' cannot be read as a private key (${parsed.message}). Expected an OpenSSH or PEM private key.`
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
 * Connect with the host key pinned (unless insecure-ignore-host-key), keep-alive on, and ready
 * within connect-timeout; through the bastion in proxy-jump when there is one (its own user, key
 * and pinned host key; the server's connection is a direct-tcpip channel of the bastion's, as
 * `ssh -J` makes it). Errors say what happened and what to do.
 */
export async function connectSsh(
  cfg: SshConfig,
  opts: { warn?: (msg: string) => void } = {}
): Promise<RemoteShell> {
  if (cfg.insecureIgnoreHostKey && cfg.hostKeyPins.length === 0)
    opts.warn?.(
      `insecure-ignore-host-key is true: the identity of ${cfg.host} is not checked, so a machine in the middle could receive the deploy. Pin it with host-fingerprint (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub).`
    )
  // the bastion's key too: one not pinned is skipped by the same input, and said as loudly, even
  // when the server behind it is pinned (a machine in the middle then sees who deploys, and when)
  if (cfg.jump && cfg.jump.insecureIgnoreHostKey && cfg.jump.hostKeyPins.length === 0)
    opts.warn?.(
      `insecure-ignore-host-key is true: the identity of the bastion ${cfg.jump.host} (proxy-jump) is not checked${cfg.hostKeyPins.length > 0 ? `, though ${cfg.host} behind it is pinned` : ''}. A machine in its place could refuse or delay the deploy and sees when it runs. Pin it with proxy-jump-fingerprint (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub on the bastion).`
    )
  // both keys are read before any socket opens: a key that cannot be read fails at once
  const keyType = privateKeyType(cfg)
  const jumpKeyType = cfg.jump ? privateKeyType(cfg.jump, 'proxy-jump-key') : ''
  const timeoutMs = cfg.connectTimeout * 1000
  let bastion: NodeSSH | undefined
  let sock: Duplex
  if (cfg.jump) {
    const jump = cfg.jump
    bastion = await open(
      { ...jump, connectTimeout: cfg.connectTimeout },
      tcpConnect({ host: jump.host, port: jump.port, noDelay: true }),
      timeoutMs,
      'proxy-jump ',
      jumpKeyType
    )
    try {
      sock = await forward(bastion, cfg, timeoutMs)
    } catch (e) {
      bastion.dispose()
      throw e
    }
  } else sock = tcpConnect({ host: cfg.host, port: cfg.port, noDelay: true })
  let ssh: NodeSSH
  try {
    ssh = await open(cfg, sock, timeoutMs, '', keyType)
  } catch (e) {
    bastion?.dispose()
    throw e
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
      bastion?.dispose()
    }
  }
}

/** One SSH connection over `sock`, its host key checked against the pins of `cfg`. */
async function open(
  cfg: Omit<SshConfig, 'jump'>,
  sock: Duplex,
  timeoutMs: number,
  what: '' | 'proxy-jump ',
  keyType: string
): Promise<NodeSSH> {
  const where = `${what}${cfg.username}@${cfg.host}:${cfg.port}`
  let rejected: string | undefined
  const ssh = new NodeSSH()
  const algorithms = hostKeyAlgorithms(cfg.hostKeyPins)
  try {
    await ssh.connect({
      // Our own socket, for TCP_NODELAY: without it every step of the handshake waits out the
      // peer's delayed ACK (~40 ms each, 0.2 s a connect on loopback).
      sock: sock as Parameters<NodeSSH['connect']>[0]['sock'],
      host: cfg.host,
      port: cfg.port,
      username: cfg.username,
      ...(cfg.privateKey
        ? { privateKey: cfg.privateKey, passphrase: cfg.passphrase }
        : { agent: cfg.agent }),
      readyTimeout: timeoutMs,
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
    sock.destroy()
    throw explainConnectError(e as Error & { code?: string; level?: string }, {
      where,
      keyType,
      rejected,
      cfg,
      what
    })
  }
  return ssh
}

/** A direct-tcpip channel from the bastion to the server, as the server's socket. */
function forward(bastion: NodeSSH, cfg: SshConfig, timeoutMs: number): Promise<Duplex> {
  const client = bastion.connection!
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () =>
        reject(
          new Error(
            `The bastion ${cfg.jump!.host}:${cfg.jump!.port} did not open a connection to ${cfg.host}:${cfg.port} within connect-timeout (${cfg.connectTimeout} s).`
          )
        ),
      timeoutMs
    )
    client.forwardOut('127.0.0.1', 0, cfg.host, cfg.port, (err, stream) => {
      clearTimeout(timer)
      if (err)
        reject(
          new Error(
            `The bastion ${cfg.jump!.username}@${cfg.jump!.host}:${cfg.jump!.port} refused to connect to ${cfg.host}:${cfg.port} (${err.message}). Check that the server's address is right as the bastion sees it, and that the bastion's sshd allows TCP forwarding (AllowTcpForwarding) for that user.`
          )
        )
      else resolve(stream)
    })
  })
}

function explainConnectError(
  e: Error & { code?: string; level?: string },
  c: {
    where: string
    keyType: string
    rejected?: string
    cfg: Omit<SshConfig, 'jump'>
    what: '' | 'proxy-jump '
  }
): Error {
  const m = e.message
  const jump = c.what !== ''
  const check = jump ? "'proxy-jump'" : "'host' and 'port'"
  if (c.rejected)
    return new Error(
      `Host key verification failed for ${c.what}${c.cfg.host}:${c.cfg.port}: the server presented ${c.rejected}, which matches none of the pinned keys (${c.cfg.hostKeyPins.map((p) => p.source).join(', ')}). Nothing was run on the server. If the key changed on purpose, update ${jump ? 'proxy-jump-fingerprint' : 'host-fingerprint'} with the output of \`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub\` on ${jump ? 'the bastion' : 'the server'}.`
    )
  if (e.code === 'ECONNREFUSED')
    return new Error(
      `Cannot connect to ${c.where}: connection refused. Check ${check}, and that sshd runs there.`
    )
  if (e.code === 'ENOTFOUND' || e.code === 'EAI_AGAIN')
    return new Error(
      `Cannot connect to ${c.where}: the host name '${c.cfg.host}' does not resolve. Check ${jump ? "'proxy-jump'" : "'host'"}.`
    )
  if (e.code === 'ETIMEDOUT' || e.code === 'EHOSTUNREACH' || /timed out/i.test(m))
    return new Error(
      `Cannot connect to ${c.where}: ${/handshake/i.test(m) ? 'no SSH handshake' : 'no answer'} within connect-timeout (${c.cfg.connectTimeout} s). Check ${check}, and that a firewall lets the runner in.`
    )
  if (/authentication methods failed/i.test(m) && c.keyType === 'ssh-agent')
    return new Error(
      `The ${jump ? 'bastion' : 'server'} refused every key of your ssh-agent (SSH_AUTH_SOCK) for ${c.where}. Add the key (ssh-add -L lists the agent's) to ~${c.cfg.username}/.ssh/authorized_keys there, check ${jump ? "the user in 'proxy-jump'" : "'username'"}, or give --ssh-key @KEYFILE.`
    )
  if (/authentication methods failed/i.test(m))
    return new Error(
      `The ${jump ? 'bastion' : 'server'} refused authentication for ${c.where} with the ${c.keyType} key from '${jump ? 'proxy-jump-key' : 'ssh-key'}'. Add its public key (ssh-keygen -y -f KEYFILE) to ~${c.cfg.username}/.ssh/authorized_keys there, and check ${jump ? "the user in 'proxy-jump'" : "'username'"}.`
    )
  if (/no matching.*host key/i.test(m) || /handshake failed/i.test(m))
    return new Error(
      `SSH handshake with ${c.where} failed: ${m}. It offers none of the host key types pinned in ${jump ? 'proxy-jump-fingerprint' : 'host-fingerprint'}; pin the key it has (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub).`
    )
  return new Error(`SSH connection to ${c.where} failed: ${m}`)
}
