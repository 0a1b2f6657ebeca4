// The inputs of the build and release side, and of the SSH connection: each group checked into
// its part of the Config, every problem reported to the one collector.
import path from 'node:path'
import { noControl, type Collector } from './config-check.js'
import type { Config } from './config-types.js'
import { defaultOf, type InputName } from './config-inputs.js'
import { checkHosts, checkJump } from './config-hosts.js'
import { DEFAULT_VERSION_PATTERN, versionProblem } from './version.js'
import { splitLines } from './words.js'

// Docker reference grammar (distribution/reference), repository part only.
const PATH_COMPONENT = '[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*'
const DOMAIN =
  '(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?'
const REPOSITORY = new RegExp(`^(?:${DOMAIN}/)?${PATH_COMPONENT}(?:/${PATH_COMPONENT})*$`)
/** a repository, then an optional tag and an optional digest (the reference's own grammar) */
const REFERENCE = new RegExp(
  `^((?:${DOMAIN}/)?${PATH_COMPONENT}(?:/${PATH_COMPONENT})*)((?::[\\w][\\w.-]{0,127})?(?:@sha256:[a-f0-9]{64})?)$`
)
const REGISTRY_HOST = /^[A-Za-z0-9_.:[\]-]+$/
const USER = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/

/** The registry host of an image repository, as Docker decides it. */
export function registryOf(image: string): string {
  const slash = image.indexOf('/')
  if (slash < 0) return 'docker.io'
  const first = image.slice(0, slash)
  return first.includes('.') || first.includes(':') || first === 'localhost' ? first : 'docker.io'
}

/** image, registry, build and the registry credentials. */
export function checkBuild(
  c: Collector
): Pick<
  Config,
  | 'image'
  | 'prebuilt'
  | 'registry'
  | 'context'
  | 'dockerfile'
  | 'buildArgs'
  | 'registryUsername'
  | 'registryPassword'
  | 'pull'
> {
  const imageRaw = c.get('image')?.trim()
  const build = c.bool('build')
  let image = ''
  let prebuilt: string | undefined
  const ref = imageRaw === undefined ? undefined : REFERENCE.exec(imageRaw)
  if (imageRaw === undefined)
    c.missing(
      'image',
      build
        ? 'the image repository without a tag, e.g. ghcr.io/acme/shop'
        : 'the image pushed already, e.g. ghcr.io/acme/shop@sha256:… or ghcr.io/acme/shop:sha-1a2b3c4'
    )
  else if (!ref && REPOSITORY.test(imageRaw.replace(/@.*$/, '').replace(/:[^/]*$/, '')))
    c.bad(
      'image',
      build
        ? 'a repository without a tag or digest, e.g. ghcr.io/acme/shop (the action adds the version and latest tags)'
        : 'the repository with a tag (:sha-1a2b3c4) or a digest (@sha256: and 64 hex digits)'
    )
  else if (!ref)
    c.bad(
      'image',
      REFERENCE.test(imageRaw.toLowerCase())
        ? `a lowercase image repository: registries refuse capitals, so write ${REFERENCE.exec(imageRaw.toLowerCase())![1]} (for ghcr.io/\${{ github.repository }}, lowercase the name in a step before this one)`
        : 'a lowercase image repository such as ghcr.io/acme/shop or registry.example.com:5000/team/app'
    )
  else if (build && ref[2])
    c.bad(
      'image',
      'a repository without a tag or digest, e.g. ghcr.io/acme/shop (the action adds the version and latest tags); to deploy an image pushed already, set build: false'
    )
  else if (!build && !ref[2])
    c.bad(
      'image',
      'with build: false, the image pushed already with its tag or digest, e.g. ghcr.io/acme/shop@sha256:… (the digest output of docker/build-push-action) or ghcr.io/acme/shop:sha-1a2b3c4'
    )
  else {
    image = ref[1]!
    if (!build) prebuilt = ref[2]
  }
  const registry = c.text(
    'registry',
    image ? registryOf(image) : '',
    (v) => REGISTRY_HOST.test(v) && !v.startsWith('-'),
    'a registry host such as ghcr.io or registry.example.com:5000'
  )
  const context = c.text(
    'context',
    defaultOf('context'),
    noControl,
    'a directory path relative to the workspace'
  )
  const dockerfile = c.text(
    'dockerfile',
    path.join(context, 'Dockerfile'),
    noControl,
    'a file path relative to the workspace'
  )
  const buildArgs = splitLines(c.get('build-args') ?? '')
  if (buildArgs.some((l) => !/^[A-Za-z_][A-Za-z0-9_]*=/.test(l)))
    c.bad('build-args', 'one KEY=VALUE per line, KEY made of letters, digits and _')
  const push = credential(
    c,
    'registry-username',
    'registry-password',
    `to log in to ${registry || 'the registry'}`
  )
  const pull = credential(
    c,
    'pull-registry-username',
    'pull-registry-password',
    `for the server's pull from ${registry || 'the registry'}`
  )
  // the servers get no credential by default: a pull credential when given, the push one only
  // when the workflow says so by name (it can push images, and as GITHUB_TOKEN write the repository)
  const pushToServers = c.bool('push-credential-to-servers')
  if (pushToServers && pull.username)
    c.add(
      "Inputs 'push-credential-to-servers' and 'pull-registry-username' do not go together: the servers get one credential. Remove push-credential-to-servers to give them the pull credential."
    )
  if (pushToServers && !push.username)
    c.add(
      "Input 'push-credential-to-servers' is true, but there is no push credential: give registry-username and registry-password, or remove push-credential-to-servers."
    )
  return {
    image,
    prebuilt,
    registry,
    context,
    dockerfile,
    buildArgs,
    registryUsername: push.username,
    registryPassword: push.password,
    pull: pull.username
      ? { ...pull, source: 'pull' }
      : pushToServers && push.username
        ? { ...push, source: 'push' }
        : { source: 'none' }
  }
}

/** A user name and a password input that go together, for `purpose`. */
function credential(
  c: Collector,
  user: InputName,
  password: InputName,
  purpose: string
): { username?: string; password?: string } {
  const username =
    c.text(
      user,
      '',
      (v) => !/[\s\0-\x1f\x7f]/.test(v),
      'a user name without spaces or control characters'
    ) || undefined
  const secret = c.get(password)
  if ((username === undefined) !== (secret === undefined))
    c.add(`Inputs '${user}' and '${password}' go together: give both ${purpose}, or neither.`)
  return { username, password: secret }
}

/** The version and the release. */
export function checkVersion(
  c: Collector
): Pick<Config, 'version' | 'versionPattern' | 'githubToken' | 'createRelease'> {
  const version =
    c.text(
      'version',
      '',
      (v) => !versionProblem(v),
      'a version such as v1.2.3: letters, digits and . _ - +, not starting with . or -'
    ) || undefined
  let versionPattern = DEFAULT_VERSION_PATTERN
  const patternRaw = c.get('version-pattern')
  if (patternRaw !== undefined) {
    try {
      versionPattern = new RegExp(patternRaw)
    } catch (e) {
      c.bad('version-pattern', `a JavaScript regular expression (${(e as Error).message})`)
    }
  }
  const createRelease = c.bool('create-release')
  return { version, versionPattern, githubToken: c.get('github-token')?.trim(), createRelease }
}

/** The servers and how to reach them: the key, the host keys, and each server (config-hosts.ts). */
export function checkServer(c: Collector, agent?: string): ReturnType<typeof checkHosts> {
  const sshPort = c.port('port')
  const username = c.get('username')?.trim()
  if (username === undefined) c.missing('username', 'the SSH user on the server, e.g. deploy')
  else if (!USER.test(username))
    c.bad('username', 'a user name of letters, digits, _ . and -, not starting with -')
  const privateKey = c.get('ssh-key')
  // the command line without a key logs in with the user's ssh-agent
  if (privateKey === undefined && agent) {
    /* the agent's keys */
  } else if (privateKey === undefined)
    c.missing('ssh-key', 'the private key, e.g. ${{ secrets.DEPLOY_KEY }}')
  else if (/-----BEGIN (ENCRYPTED )?PRIVATE KEY-----/.test(privateKey))
    c.bad(
      'ssh-key',
      'an OpenSSH or PEM private key; this is a PKCS#8 key, which is not supported. Convert it with: ssh-keygen -p -f KEYFILE (it is rewritten in OpenSSH format)'
    )
  else if (!/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(privateKey))
    c.bad(
      'ssh-key',
      'the text of a private key starting with -----BEGIN OPENSSH PRIVATE KEY----- (not a path or a public key)'
    )
  const insecureIgnoreHostKey = c.bool('insecure-ignore-host-key')
  const defaults = {
    port: sshPort,
    username: username && USER.test(username) ? username : 'deploy'
  }
  const shared = {
    privateKey: privateKey ?? '',
    agent: privateKey === undefined ? agent : undefined,
    passphrase: c.get('ssh-passphrase'),
    insecureIgnoreHostKey,
    fingerprints: c.get('host-fingerprint'),
    knownHosts: c.get('known-hosts')
  }
  const servers = checkHosts(c, defaults, {
    ...shared,
    connectTimeout: c.num('connect-timeout', 1, 600, false),
    jump: checkJump(c, defaults, shared)
  })
  if (
    !insecureIgnoreHostKey &&
    c.get('host-fingerprint') === undefined &&
    c.get('known-hosts') === undefined
  )
    c.add(
      "The server's host key is not pinned: set 'host-fingerprint' to the output of `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` run on the server (or 'known-hosts' to the output of `ssh-keyscan HOST`), or set 'insecure-ignore-host-key: true' to skip the check."
    )
  return servers
}
