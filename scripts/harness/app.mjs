// The sample busybox app: its source, a git workspace, a version committed.
import { execFileSync } from 'node:child_process'
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'

/**
 * @typedef {object} AppBehaviour
 * @property {string} version body of / (the version marker)
 * @property {number} [startDelay] seconds before the HTTP server starts listening
 * @property {boolean} [crash] exit right away instead of serving
 * @property {boolean} [neverHealthy] serve /, but answer 404 on the health path
 * @property {string[]} [logLines] lines the app prints to its log when it starts
 * @property {boolean} [sickWithFlag] never healthy where /flag/sick exists in the container (a
 *   volume that one test server holds)
 * @property {{ after: number, inTen: number }} [failsLater] `after` seconds after it started, `/`
 *   answers 500 to `inTen` in 10 requests, drawn at random for each (the health path stays fine)
 */

/**
 * The sample app's source: a busybox web server (FROM scratch, no image pull needed) where
 * `/` answers the version, `/health` answers ok, `/cgi-bin/slow` answers after 3 s and
 * `/cgi-bin/env?NAME` prints an environment variable.
 * @param {string} ws
 * @param {AppBehaviour} b
 */
export function writeAppSource(ws, b) {
  mkdirSync(path.join(ws, 'www/cgi-bin'), { recursive: true })
  copyFileSync('/bin/busybox', path.join(ws, 'busybox'))
  rmSync(path.join(ws, 'www/index.html'), { force: true })
  if (b.failsLater)
    // busybox httpd runs cgi-bin/index.cgi for / when there is no index.html
    writeFileSync(
      path.join(ws, 'www/cgi-bin/index.cgi'),
      [
        '#!/bin/sh',
        // each answer on its own draw: a counter file would be read and written by concurrent CGIs
        `if [ $(( $(date +%s) - $(cat /started) )) -ge ${b.failsLater.after} ] && [ $((RANDOM % 10)) -lt ${b.failsLater.inTen} ]; then`,
        `  printf 'HTTP/1.0 500 Internal Server Error\\r\\nContent-Type: text/plain\\r\\n\\r\\n${b.version} failing\\n'`,
        `else printf 'Content-Type: text/plain\\r\\n\\r\\n${b.version}\\n'; fi`,
        ''
      ].join('\n'),
      { mode: 0o755 }
    )
  else {
    rmSync(path.join(ws, 'www/cgi-bin/index.cgi'), { force: true })
    writeFileSync(path.join(ws, 'www/index.html'), `${b.version}\n`)
  }
  writeFileSync(path.join(ws, 'www/health'), 'ok\n')
  const cgi = (/** @type {string} */ name, /** @type {string} */ body) =>
    writeFileSync(path.join(ws, `www/cgi-bin/${name}`), `#!/bin/sh\n${body}\n`, { mode: 0o755 })
  cgi('slow', `sleep 3\nprintf 'Content-Type: text/plain\\r\\n\\r\\n${b.version} slow\\n'`)
  // a long-lived response: a line a second, ?N lines (default 30), unbuffered through nginx
  cgi(
    'stream',
    [
      `printf 'Content-Type: text/plain\\r\\nX-Accel-Buffering: no\\r\\n\\r\\n'`,
      'n="${QUERY_STRING:-30}"; case "$n" in *[!0-9]*|\'\') n=30;; esac',
      `i=0; while [ $i -lt "$n" ]; do echo "${b.version} $i"; sleep 1; i=$((i + 1)); done`
    ].join('\n')
  )
  // busybox-static has no printenv; the name is checked before it reaches eval
  cgi(
    'env',
    [
      `case "$QUERY_STRING" in *[!A-Za-z0-9_]*|'') exit 1;; esac`,
      `printf 'Content-Type: application/octet-stream\\r\\n\\r\\n'`,
      `eval "printf '%s\\n' \\"\\$$QUERY_STRING\\""`
    ].join('\n')
  )
  const say = (b.logLines ?? [])
    .map((l) => `printf '%s\\n' '${l.replace(/'/g, `'\\''`)}'; `)
    .join('')
  const start =
    say +
    (b.crash
      ? 'echo "boom: cannot start" >&2; exit 3'
      : `sleep ${b.startDelay ?? 0}; date +%s > /started; ${b.neverHealthy ? 'rm /www/health; ' : ''}${b.sickWithFlag ? 'if [ -e /flag/sick ]; then rm /www/health; fi; ' : ''}exec httpd -f -p 8080 -h /www`)
  writeFileSync(path.join(ws, 'start.sh'), `#!/bin/sh\n${start}\n`, { mode: 0o755 })
  writeFileSync(
    path.join(ws, 'Dockerfile'),
    [
      'FROM scratch',
      'COPY busybox /bin/busybox',
      'RUN ["/bin/busybox", "--install", "-s", "/bin"]',
      'COPY www /www',
      'COPY start.sh /start.sh',
      'CMD ["/start.sh"]',
      ''
    ].join('\n')
  )
}

/**
 * @param {string} ws
 * @param {...string} args
 */
function git(ws, ...args) {
  return execFileSync('git', ['-C', ws, '-c', 'user.name=t', '-c', 'user.email=t@e', ...args], {
    stdio: 'pipe'
  }).toString()
}

/**
 * A git repository holding the sample app at `behaviour`, committed with `commitMessage`.
 * @param {AppBehaviour} behaviour
 * @param {string} [commitMessage]
 * @param {string} [dir] where (default: a new temporary directory)
 * @returns {string} the workspace
 */
export function makeWorkspace(behaviour, commitMessage = 'initial', dir) {
  const ws = dir ?? mkdtempSync(path.join(tmpdir(), 'bgd-ws-'))
  mkdirSync(ws, { recursive: true })
  writeAppSource(ws, behaviour)
  git(ws, 'init', '-q')
  git(ws, 'add', '-A')
  git(ws, 'commit', '-q', '-m', commitMessage)
  return ws
}

/** @param {string} ws */
export function headSha(ws) {
  return git(ws, 'rev-parse', 'HEAD').trim()
}

/** @param {string} ws */
export function headMessage(ws) {
  return git(ws, 'log', '-1', '--format=%B')
}

/**
 * Change the workspace to a new version of the app and commit it as `release <version>`.
 * @param {string} ws
 * @param {AppBehaviour} behaviour
 * @returns {{ event: object, sha: string }} the push event for that commit
 */
export function commitAppVersion(ws, behaviour) {
  writeAppSource(ws, behaviour)
  git(ws, 'commit', '-qam', `release ${behaviour.version}`)
  const sha = headSha(ws)
  return { sha, event: { head_commit: { id: sha, message: `release ${behaviour.version}` } } }
}
