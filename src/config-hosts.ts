// The servers of a run: `host` or `hosts` (one per line), the optional load-balancer host, and
// how a run over several servers goes (bind address, parallelism, previews, promote). Each server
// is a complete SSH config: its own address, port and user, and the host keys pinned for it.
import { isIP } from 'node:net'
import type { Collector } from './config-check.js'
import type { Config, JumpHost } from './config-types.js'
import type { SwitchMode } from './config-inputs.js'
import { parseHostKeyPins } from './hostkey.js'

export type SshConfig = Config['ssh']

const NAME = /^[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?$/
const USER = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/

export interface HostAddress {
  host: string
  port: number
  username: string
}

/**
 * One server as people write it: `host`, `host:port`, `user@host`, `user@host:port`, an IPv6
 * address bare or in brackets (`[::1]`, `[::1]:2222`). A problem is returned as a string.
 */
export function parseHostLine(
  line: string,
  defaults: { port: number; username?: string }
): HostAddress | string {
  let rest = line.trim()
  let username = defaults.username
  const at = rest.lastIndexOf('@')
  if (at >= 0) {
    username = rest.slice(0, at)
    rest = rest.slice(at + 1)
    if (!USER.test(username)) return `the user '${username}' is not a user name`
  }
  let host = rest
  let port = defaults.port
  const bracket = /^\[([^\]]*)\](?::(\d+))?$/.exec(rest)
  if (bracket) {
    host = bracket[1]!
    if (bracket[2] !== undefined) port = Number(bracket[2])
    if (isIP(host) !== 6) return `'${host}' in brackets is not an IPv6 address`
  } else if (isIP(rest) === 6) {
    host = rest
  } else {
    const m = /^([^:]+)(?::(\d+))?$/.exec(rest)
    if (!m) return 'expected host, host:port or [IPv6]:port'
    host = m[1]!
    if (m[2] !== undefined) port = Number(m[2])
    if (!NAME.test(host)) return `'${host}' is not a host name or address`
  }
  if (!Number.isInteger(port) || port < 1 || port > 65535) return `port ${port} is not 1 to 65535`
  if (!username) return 'no user: give username, or user@host'
  return { host, port, username }
}

/** The address as nginx and ssh write it: an IPv6 address in brackets. */
export function hostForUrl(host: string): string {
  return isIP(host) === 6 ? `[${host}]` : host
}

interface Shared {
  privateKey: string
  agent?: string
  passphrase?: string
  insecureIgnoreHostKey: boolean
  fingerprints?: string
  knownHosts?: string
  connectTimeout: number
  jump?: JumpHost
}

function sshOf(c: Collector, a: HostAddress, shared: Shared, where: string): SshConfig {
  let hostKeyPins: SshConfig['hostKeyPins'] = []
  try {
    hostKeyPins = parseHostKeyPins(shared.fingerprints, shared.knownHosts, a.host, a.port)
  } catch (e) {
    c.add(`${where}: ${(e as Error).message}`)
  }
  return {
    host: a.host,
    port: a.port,
    username: a.username,
    privateKey: shared.privateKey,
    passphrase: shared.passphrase,
    ...(shared.agent ? { agent: shared.agent } : {}),
    hostKeyPins,
    insecureIgnoreHostKey: shared.insecureIgnoreHostKey,
    connectTimeout: shared.connectTimeout,
    ...(shared.jump ? { jump: shared.jump } : {})
  }
}

/**
 * proxy-jump: the bastion as `[user@]host[:port]` (user: `username`), its key (proxy-jump-key, else
 * ssh-key) and its host key: proxy-jump-fingerprint, else the known-hosts lines for it.
 */
export function checkJump(
  c: Collector,
  d: { port: number; username?: string },
  shared: Omit<Shared, 'jump' | 'connectTimeout'>
): JumpHost | undefined {
  const raw = c.get('proxy-jump')?.trim()
  const key = c.get('proxy-jump-key')
  const fingerprints = c.get('proxy-jump-fingerprint')
  if (raw === undefined) {
    if (key !== undefined || fingerprints !== undefined)
      c.add(
        "Inputs 'proxy-jump-key' and 'proxy-jump-fingerprint' belong to 'proxy-jump': set proxy-jump to the bastion (user@host:port), or remove them."
      )
    return undefined
  }
  const a = parseHostLine(raw, { port: 22, username: d.username })
  if (typeof a === 'string') {
    c.add(
      `Invalid proxy-jump '${raw}': ${a}. Expected the bastion as host, user@host or user@host:port (as for ssh -J).`
    )
    return undefined
  }
  if (key !== undefined && !/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(key))
    c.bad(
      'proxy-jump-key',
      "the text of the bastion's private key, starting with -----BEGIN OPENSSH PRIVATE KEY----- (empty: ssh-key is used)"
    )
  let hostKeyPins: JumpHost['hostKeyPins'] = []
  try {
    hostKeyPins = parseHostKeyPins(
      fingerprints,
      fingerprints === undefined ? shared.knownHosts : undefined,
      a.host,
      a.port
    ).map((p) => ({ ...p, source: p.source.replace('host-fingerprint', 'proxy-jump-fingerprint') }))
  } catch (e) {
    c.add(
      `proxy-jump: ${(e as Error).message.replace(/host-fingerprint/g, 'proxy-jump-fingerprint')}`
    )
  }
  if (hostKeyPins.length === 0 && !shared.insecureIgnoreHostKey)
    c.add(
      `The bastion's host key is not pinned: set 'proxy-jump-fingerprint' to the output of \`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub\` run on ${a.host}, or add its line (ssh-keyscan -p ${a.port} ${a.host}) to 'known-hosts'.`
    )
  return {
    ...a,
    privateKey: key ?? shared.privateKey,
    passphrase: key === undefined ? shared.passphrase : undefined,
    ...(key === undefined && shared.agent ? { agent: shared.agent } : {}),
    hostKeyPins,
    insecureIgnoreHostKey: shared.insecureIgnoreHostKey
  }
}

/**
 * The servers: `host` (one) or `hosts` (one per line), each `[user@]host[:port]`, with `port` and
 * `username` as the defaults; and `lb-host`, the load balancer in front of them.
 */
export function checkHosts(
  c: Collector,
  d: { port: number; username?: string },
  shared: Shared
): { ssh: SshConfig; hosts: SshConfig[]; lb?: SshConfig } {
  const one = c.get('host')?.trim()
  const many = c.get('hosts')
  const lines: [string, string][] = []
  if (one !== undefined && many !== undefined)
    c.add(
      "Inputs 'host' and 'hosts' are both set: give one server in 'host', or every server in 'hosts' (one per line), not both."
    )
  else if (one !== undefined) lines.push(['host', one])
  else if (many !== undefined)
    for (const [i, l] of many.split('\n').entries()) {
      const t = l.trim()
      if (t !== '' && !t.startsWith('#')) lines.push([`hosts line ${i + 1}`, t])
    }
  else
    c.missing(
      'host',
      "the server to deploy to, e.g. ${{ secrets.DEPLOY_HOST }} (or 'hosts', one server per line)"
    )
  const hosts: SshConfig[] = []
  const seen = new Set<string>()
  for (const [where, line] of lines) {
    const a = parseHostLine(line, d)
    if (typeof a === 'string') {
      c.add(
        `Invalid ${where} '${line}': ${a}. Expected host, host:port, user@host:port or [IPv6]:port.`
      )
      continue
    }
    const key = `${a.host}:${a.port}`
    if (seen.has(key)) c.add(`Invalid ${where}: ${key} is listed twice.`)
    seen.add(key)
    hosts.push(sshOf(c, a, shared, where))
  }
  let lb: SshConfig | undefined
  const lbRaw = c.get('lb-host')?.trim()
  if (lbRaw !== undefined) {
    const a = parseHostLine(lbRaw, d)
    if (typeof a === 'string')
      c.add(
        `Invalid lb-host '${lbRaw}': ${a}. Expected the load balancer's host, host:port or user@host:port.`
      )
    else lb = sshOf(c, a, shared, 'lb-host')
  }
  return { ssh: hosts[0] ?? ({} as SshConfig), hosts, lb }
}

/** How a run over several servers goes. */
export function checkFleet(
  c: Collector,
  s: {
    hosts: SshConfig[]
    lb?: SshConfig
    mode: SwitchMode
    network?: string
    after: Config['after']
  }
): Config['fleet'] {
  const bindAddress = c.text(
    'bind-address',
    '127.0.0.1',
    (v) => isIP(v) === 4,
    'an IPv4 address of the app servers, such as 127.0.0.1 (the default), 0.0.0.0 or a private address'
  )
  const maxParallel = c.num('max-parallel', 0, 1000, true)
  const promote = c.bool('promote')
  const previewFile = c.text(
    'nginx-preview-file',
    '',
    (v) => v.startsWith('/') && !/[\s;{}'"$\\]/.test(v),
    "an absolute path without spaces, quotes, ; { } or $, e.g. /etc/nginx/bg-deploy/shop-preview.conf, that the server block includes with 'include /etc/nginx/bg-deploy/shop-preview*.conf;'"
  )
  // who may reach the previews: addresses or networks (CIDR); nobody else sees them
  const allowText = c.get('preview-allow')?.trim() ?? ''
  const previewAllow = allowText === '' ? [] : allowText.split(/[\s,]+/)
  const badAllow = previewAllow.filter((a) => {
    const [ip, bits, extra] = a.split('/')
    const v = isIP(ip ?? '')
    if (v === 0 || extra !== undefined) return true
    return bits !== undefined && !(/^\d{1,3}$/.test(bits) && Number(bits) <= (v === 4 ? 32 : 128))
  })
  if (badAllow.length > 0)
    c.bad(
      'preview-allow',
      'addresses or networks such as 203.0.113.7 or 10.0.0.0/8, separated by commas or spaces'
    )
  else if (previewAllow.length > 0 && !previewFile)
    c.add(
      "Input 'preview-allow' limits the preview routes: set nginx-preview-file too, or leave it out."
    )
  if (s.lb) {
    if (bindAddress.startsWith('127.'))
      c.add(
        `Input 'bind-address' is ${bindAddress}, so the load balancer on lb-host (${s.lb.host}) cannot reach the app servers' ports: set it to 0.0.0.0 or to an address the load balancer reaches (and let only the load balancer through your firewall).`
      )
    if (s.mode === 'dnat')
      c.add(
        "switch-mode dnat does not work with lb-host yet: the load balancer's nginx switches with a reload. Remove switch-mode or lb-host."
      )
    if (s.network)
      c.add(
        "Input 'network' does not work with lb-host: the load balancer reaches the app servers by their published ports, not through a Docker network on each server. Remove one of them."
      )
    if (s.hosts.some((h) => h.host === s.lb!.host && h.port === s.lb!.port))
      c.add(
        `lb-host ${s.lb.host}:${s.lb.port} is also in hosts: the load balancer runs nginx, the app servers run the app; give them apart.`
      )
  } else if (s.mode === 'dnat' && !['127.0.0.1', '0.0.0.0'].includes(bindAddress))
    c.add(
      `switch-mode dnat sends the live port to 127.0.0.1, where the app is not published with bind-address ${bindAddress}: use 127.0.0.1 or 0.0.0.0, or switch-mode reload.`
    )
  const several = s.hosts.length > 1 || s.lb !== undefined || !promote || previewFile !== ''
  // the watch: after a switch, so not with promote: false (the promote run watches)
  if (s.after.watch > 0 && !promote)
    c.add(
      "Input 'watch' needs promote: true: a run that only prepares switches nothing to watch. Set watch on the run that promotes."
    )
  if (s.after.canary.steps.length > 0) {
    if (s.mode === 'dnat')
      c.add(
        "Input 'canary' needs switch-mode reload: in dnat mode the kernel's one NAT rule sends every connection to one color, and a split by client would need a rule per client. Remove switch-mode dnat or canary."
      )
    if (s.network)
      c.add(
        "Input 'canary' does not work with 'network' yet: nginx reaches both colors on the same container port there, so their answers cannot be told apart in its log. Remove network or canary."
      )
    if (s.hosts.length > 1 && !s.lb)
      c.add(
        "Input 'canary' with several servers needs lb-host: the load balancer splits the clients once for every server; without it each server's nginx would split its own. Add lb-host, or remove canary."
      )
  }
  if (several && s.after.keepWarm > 0)
    c.add(
      "Input 'keep-warm' works with one server and promote: true for now; with several servers, a load balancer, previews or promote: false, leave it out."
    )
  return {
    bindAddress,
    maxParallel,
    promote,
    previewFile: previewFile || undefined,
    previewAllow,
    several,
    taskHost: checkTaskHost(c, s.hosts)
  }
}

/**
 * pre-switch-host: the server of `hosts` the pre-switch task runs on (index; 0, the first, unless
 * named), as host or host:port exactly as hosts gives it.
 */
function checkTaskHost(c: Collector, hosts: SshConfig[]): number {
  const raw = c.get('pre-switch-host')?.trim()
  if (raw === undefined) return 0
  const i = hosts.findIndex(
    (h) => raw === h.host || raw === `${h.host}:${h.port}` || raw === `[${h.host}]:${h.port}`
  )
  if (i < 0)
    c.add(
      `Input 'pre-switch-host' (${raw}) is not one of the servers in hosts: give one of ${hosts.map((h) => h.host).join(', ')} (host or host:port, as hosts has it).`
    )
  return Math.max(i, 0)
}
