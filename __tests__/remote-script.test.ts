// The server script's own guards, run in a real bash with small fakes on PATH (no Docker, nginx or
// iptables needed): xtrace from the server's environment, the exact NAT jump removal, the
// upstream temporary file, and the boot-time restore unit.
import { execFileSync, spawnSync } from 'node:child_process'
import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  statSync,
  symlinkSync,
  writeFileSync
} from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { ROLE_SECRETS, ROLES, type Role, type SecretLine } from '../src/remote/protocol.js'
import { loadDeployScript, remoteStdin } from '../src/remote/request.js'
import { binomialTail } from '../src/fleet-watch.js'
import { testConfig } from './support/config.js'
import { joinRemote, PARTS } from '../scripts/join-remote.mjs'

const script = loadDeployScript()
const b64 = (s: string) => Buffer.from(s).toString('base64')

function fakeBin(dir: string, name: string, body: string): void {
  mkdirSync(dir, { recursive: true })
  writeFileSync(path.join(dir, name), `#!/usr/bin/env bash\n${body}\n`)
  chmodSync(path.join(dir, name), 0o755)
}

/** The script's functions (its last line, `main "$@"`, left out), in a file to source: the
 * script is longer than one argument may be (128 KiB). */
const functionsFile = path.join(mkdtempSync(path.join(tmpdir(), 'bgd-functions-')), 'functions.sh')
writeFileSync(functionsFile, script.replace('main "$@"; exit "$?"\n', ''))

/** Run `body` in bash with the script's functions loaded. */
function withFunctions(body: string, env: Record<string, string> = {}): string {
  const r = spawnSync('bash', ['-c', `source ${functionsFile}\n${body}`], {
    env: { ...process.env, ...env },
    encoding: 'utf8'
  })
  if (r.status !== 0) throw new Error(`bash exited ${r.status}: ${r.stderr}`)
  return r.stdout + r.stderr
}

test('the bundle ships the parts in src/remote, joined in order (run npm run bundle after editing one)', () => {
  expect(script).toBe(joinRemote())
  for (const part of PARTS) expect(script).toContain(`# ==== src/remote/${part}\n`)
  expect(script.startsWith('#!/usr/bin/env bash\n')).toBe(true)
  expect(script.endsWith('main "$@"; exit "$?"\n')).toBe(true)
})

test('a server whose SHELLOPTS and BASH_ENV turn on xtrace gets no secret printed', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'bgd-xtrace-'))
  // a docker that fails: the script stops right after it has read the secrets
  fakeBin(path.join(dir, 'bin'), 'docker', 'exit 1')
  writeFileSync(path.join(dir, 'bash_env'), 'set -x\n')
  const secret = 'pem-line-SECRET-0123456789'
  const run = (env: Record<string, string>) =>
    spawnSync(
      'bash',
      ['-s', '--', 'app=x', 'image=r/x:v1', `state_dir=${dir}/state`, 'docker_timeout=1'],
      {
        input: `${script}\nregistry_password ${b64(secret)}\nenv K ${b64(secret)}\nend\n`,
        env: { PATH: `${dir}/bin:${process.env.PATH}`, HOME: dir, ...env },
        encoding: 'utf8'
      }
    )
  const r = run({ SHELLOPTS: 'xtrace', BASH_ENV: path.join(dir, 'bash_env') })
  expect(r.status).toBe(1)
  expect(r.stderr).toMatch(/docker info failed/)
  for (const s of [secret, b64(secret)]) expect(r.stdout + r.stderr).not.toContain(s)
  // the control: the same environment does trace a script that does not turn xtrace off
  const traced = spawnSync('bash', ['-s'], {
    input: 'read -r a; printf "%s" "$a" >/dev/null\n' + secret + '\n',
    env: { PATH: process.env.PATH, SHELLOPTS: 'xtrace', BASH_ENV: path.join(dir, 'bash_env') },
    encoding: 'utf8'
  })
  expect(traced.stderr).toContain(secret)
})

test("leaving dnat mode removes exactly this app's jump: app my.app leaves myxapp's rule", () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'bgd-nat-'))
  fakeBin(
    path.join(dir, 'bin'),
    'iptables',
    `if [[ "$*" == *"-S OUTPUT"* ]]; then
  echo "-P OUTPUT ACCEPT"
  echo "-A OUTPUT -d 127.0.0.1/32 -p tcp -m tcp --dport 8083 -j BGD-my.app"
  echo "-A OUTPUT -d 127.0.0.1/32 -p tcp -m tcp --dport 9083 -j BGD-myxapp"
  echo "-A OUTPUT -d 127.0.0.1/32 -p tcp -m tcp --dport 7083 -j BGD-my.app2"
fi
echo "$*" >>"${dir}/calls"`
  )
  withFunctions('P[app]=my.app; nat_remove', { PATH: `${dir}/bin:${process.env.PATH}` })
  const calls = readFileSync(path.join(dir, 'calls'), 'utf8').split('\n').filter(Boolean)
  expect(calls.filter((c) => / -D /.test(c))).toEqual([
    '-w -t nat -D OUTPUT -d 127.0.0.1/32 -p tcp -m tcp --dport 8083 -j BGD-my.app'
  ])
  expect(calls).toContain('-w -t nat -X BGD-my.app')
})

test('the upstream file is written through a new temporary file, never through a link left there', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'bgd-up-'))
  const conf = path.join(dir, 'conf.d')
  mkdirSync(conf)
  const victim = path.join(dir, 'victim')
  writeFileSync(victim, 'keep me\n')
  // the name the temporary file had before, and one an attacker might guess
  symlinkSync(victim, path.join(conf, '.shop-upstream.conf.bg-deploy.tmp'))
  const out = withFunctions(
    `STATE_DIR=${dir}/state; mkdir -p "$STATE_DIR"
P[app]=shop; P[upstream_name]=shop; P[upstream_file]=${conf}/shop-upstream.conf
P[nginx_test]=true; P[nginx_reload]=true
nginx_workers() { :; }
upstream_switch 127.0.0.1:8081 blue
main_cleanup
ls -A ${conf}`
  )
  expect(readFileSync(victim, 'utf8')).toBe('keep me\n')
  expect(lstatSync(path.join(conf, '.shop-upstream.conf.bg-deploy.tmp')).isSymbolicLink()).toBe(
    true
  )
  expect(readFileSync(path.join(conf, 'shop-upstream.conf'), 'utf8')).toMatch(
    /upstream shop \{\n {4}server 127\.0\.0\.1:8081;/
  )
  expect(statSync(path.join(conf, 'shop-upstream.conf')).mode & 0o777).toBe(0o644)
  // no temporary file is left behind
  expect(out.trim().split('\n').sort()).toEqual([
    '.shop-upstream.conf.bg-deploy.tmp',
    'shop-upstream.conf'
  ])
})

test('the boot-time restore runs as the deploy user, never as root for a file that user can edit', () => {
  const unit = withFunctions('nat_unit deploy /home/deploy/.bg-deploy/restore-dnat.sh')
  expect(unit).toMatch(/^User=deploy$/m)
  expect(unit).toMatch(/^ExecStart=\/bin\/bash \/home\/deploy\/\.bg-deploy\/restore-dnat\.sh$/m)
  expect(withFunctions('nat_unit_name deploy; nat_unit_name root')).toBe(
    'bg-deploy-dnat-deploy.service\nbg-deploy-dnat.service\n'
  )
  expect(withFunctions('nat_unit root /var/lib/bg-deploy/restore-dnat.sh')).toMatch(/^User=root$/m)
})

test('the restore script takes only a chain name and ports from a state file', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'bgd-restore-'))
  fakeBin(path.join(dir, 'bin'), 'iptables', 'exit 0')
  fakeBin(path.join(dir, 'bin'), 'iptables-restore', `cat >>"${dir}/restored"`)
  fakeBin(path.join(dir, 'bin'), 'systemctl', 'exit 1')
  const root = path.join(dir, 'root')
  for (const [app, chain] of [
    ['good', 'BGD-good'],
    ['evil', 'BGD-x -j ACCEPT']
  ] as const) {
    mkdirSync(path.join(root, app), { recursive: true })
    writeFileSync(
      path.join(root, app, 'state'),
      `switch_mode=dnat\nnat_chain=${chain}\nlive_port=8083\nport=8081\n`
    )
  }
  withFunctions(`STATE_DIR=${root}/good; nat_install_restore`, {
    PATH: `${dir}/bin:${process.env.PATH}`
  })
  const r = spawnSync('bash', [path.join(root, 'restore-dnat.sh')], {
    env: { PATH: `${dir}/bin:${process.env.PATH}` },
    encoding: 'utf8'
  })
  expect(r.stdout).toMatch(/restored BGD-good/)
  expect(r.stderr).toMatch(/skipped .*evil\/state/)
  expect(readFileSync(path.join(dir, 'restored'), 'utf8')).not.toMatch(/ACCEPT/)
  expect(existsSync(path.join(root, 'restore-dnat.sh'))).toBe(true)
})

test('shellcheck passes on the joined script', () => {
  execFileSync('shellcheck', ['-s', 'bash', '-'], { input: script })
})

test('in dnat mode, the CLOSE conntrack entries that still translate to the old color are deleted', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'bgd-ct-'))
  fakeBin(path.join(dir, 'bin'), 'conntrack', `echo "$*" >>"${dir}/calls"; [[ "$1" == -L ]]`)
  const env = { PATH: `${dir}/bin:${process.env.PATH}` }
  const setup =
    'P[switch_mode]=dnat; SWITCH_MODE=dnat; P[live_port]=8083; P[blue_port]=8081; P[green_port]=8082'
  withFunctions(`${setup}; PREV_MODE=dnat; nat_forget blue`, env)
  const calls = readFileSync(path.join(dir, 'calls'), 'utf8')
  expect(calls).toContain(
    '-D -p tcp --orig-dst 127.0.0.1 --dport 8083 --reply-port-src 8081 --state CLOSE'
  )
  // only CLOSE entries: never an open connection, never the TIME_WAIT ones the kernel handles
  expect(calls).not.toMatch(/-D(?!.*--state CLOSE$)/m)
  // the switch did not go through the rule before (reload -> dnat): nothing to delete
  writeFileSync(path.join(dir, 'calls'), '')
  withFunctions(`${setup}; PREV_MODE=reload; nat_forget blue`, env)
  expect(readFileSync(path.join(dir, 'calls'), 'utf8')).toBe('')
  // no usable conntrack: the old color runs on for the kernel's CLOSE timeout before it stops
  const none = withFunctions(
    `${setup}; PREV_MODE=dnat; P[app]=shop; nat_forget green || nat_stop_delay green`,
    { PATH: `${dir}/nobin:/usr/bin:/bin` }
  )
  expect(none).toMatch(
    /conntrack \(package conntrack\) is not usable here: shop-green keeps running/
  )
  expect(none.trim().split('\n').pop()).toMatch(/^\d+$/)
})

test('a rollback picks its target from the history: previous is the newest good version not serving', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'bgd-hist-'))
  const row = (v: string, result: string) =>
    ['2026-11-27T00:00:00Z', 'a', 'u', 'deploy', v, `r/app:${v}`, 'blue', result].join('\t')
  writeFileSync(
    path.join(dir, 'history'),
    [row('v1', 'ok'), row('v2', 'ok'), row('v3', 'failed-health'), row('v2', 'ok'), ''].join('\n')
  )
  const pick = (target: string, current: string) =>
    withFunctions(
      `STATE_DIR=${dir}; P[app]=app; P[image]=r/app:${target}; P[target]=${target}; target_pick '${current}'; echo "$RUN_VERSION $RUN_IMAGE | $TARGET_AVAILABLE"`
    ).trim()
  expect(pick('previous', 'v2')).toBe('v1 r/app:v1 | v2 v1')
  // a version never deployed here: the registry's tag
  expect(pick('v9', 'v2')).toBe('v9 r/app:v9 | v2 v1')
  expect(() => pick('previous', '')).not.toThrow()
})

test("the watch window's log condition matches exactly the window's seconds, in whole tens, hundreds… where they fit", () => {
  const range = withFunctions('watch_range 1764800013 1764800041')
  expect(range).toBe(
    '1764800013|1764800014|1764800015|1764800016|1764800017|1764800018|1764800019|176480002[0-9]|176480003[0-9]|1764800040|1764800041'
  )
  const re = new RegExp(`^(${range})$`)
  for (let s = 1764800000; s < 1764800060; s++)
    expect([s, re.test(String(s))]).toEqual([s, s >= 1764800013 && s <= 1764800041])
  // a window of health-timeout + watch + 60 s stays a short expression
  const long = withFunctions('watch_range 1764800093 1764801380')
  expect(long.split('|').length).toBeLessThan(40)
  const reLong = new RegExp(`^(${long})$`)
  for (let s = 1764800000; s < 1764801500; s++)
    expect([s, reLong.test(String(s))]).toEqual([s, s >= 1764800093 && s <= 1764801380])
})

test('the watch counts the answers before the switch (the old color) apart from those after it, and a breach is the new share above the old one by more than the margin (before the end, beyond chance)', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'bgd-watch-'))
  writeFileSync(
    path.join(dir, 'access.log'),
    ['1000.000 500', '2000.100 200', '2000.200 502', '2001.000 200', '2002.500 200'].join('\n') +
      '\n'
  )
  const out = withFunctions(
    `STATE_DIR=${dir}; P[watch_max_error_rate]=20; WATCH_FROM=2000; WATCH_SWITCHED=2000150
     watch_count; echo "$WATCH_TOTAL $WATCH_BAD $WATCH_BASE_TOTAL $WATCH_BASE_BAD"
     printf '2003.000 503\\n' >>${dir}/access.log
     watch_count; echo "$WATCH_TOTAL $WATCH_BAD $WATCH_BASE_TOTAL $WATCH_BASE_BAD"
     # at the window's end (final): the margin alone
     if watch_breached 4 1 final; then echo breach; else echo fine; fi
     if watch_breached 5 1 final; then echo breach; else echo fine; fi
     if watch_breached 0 0 final; then echo breach; else echo fine; fi
     # a baseline of 10 % from 40 answers: 30 % is within 10 + 20, 31 % is not
     WATCH_BASE_TOTAL=40; WATCH_BASE_BAD=4; watch_base_rate; echo
     if watch_breached 100 30 final; then echo breach; else echo fine; fi
     if watch_breached 100 31 final; then echo breach; else echo fine; fi
     # before the end, only beyond chance: 31 of 100 is 1 point over, likely by chance from a
     # version at the limit (30 %); 60 of 100 is not (a chance under 1 in 1,000)
     if watch_breached 100 31; then echo breach; else echo fine; fi
     if watch_breached 100 60; then echo breach; else echo fine; fi
     # fewer than 20 answers before the switch: no baseline, the margin is the limit
     WATCH_BASE_TOTAL=19; watch_base_rate; echo
     # a clean predecessor and a 1-point margin: one 5xx of one answer is a 1 in 100 chance, two
     # of two 1 in 10,000: switched back after a handful
     P[watch_max_error_rate]=1
     if watch_breached 1 1; then echo breach; else echo fine; fi
     if watch_breached 2 2; then echo breach; else echo fine; fi`
  )
  expect(out.trim().split('\n')).toEqual([
    '3 1 1 0',
    '4 2 1 0',
    'breach',
    'fine',
    'fine',
    '10.0',
    'fine',
    'breach',
    'fine',
    'breach',
    '0',
    'fine',
    'breach'
  ])
  // the runner judges a sum over several servers with the same tail (src/fleet-watch.ts)
  expect(binomialTail(100, 31, 0.3)).toBeGreaterThan(0.001)
  expect(binomialTail(100, 60, 0.3)).toBeLessThan(0.001)
  expect(binomialTail(1, 1, 0.01)).toBeCloseTo(0.01, 10)
  expect(binomialTail(2, 2, 0.01)).toBeCloseTo(0.0001, 10)
  expect(binomialTail(10, 3, 0.1)).toBeCloseTo(
    1 - 0.9 ** 10 - 10 * 0.1 * 0.9 ** 9 - 45 * 0.01 * 0.9 ** 8,
    10
  )
  expect(binomialTail(100000, 9000, 0.1)).toBe(1)
  expect(binomialTail(100000, 11000, 0.1)).toBeLessThan(1e-20)
})

test('the canary: the upstream splits clients by weight over both colors of every server, and its log tells the new color apart in the same seconds', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'bgd-canary-'))
  const out = withFunctions(
    `STATE_DIR=${dir}; P[app]=shop; P[role]=lb; P[lb_servers]=10.0.0.1,10.0.0.2; P[blue_port]=8081; P[green_port]=8082
     P[canary_key]='$cookie_id'; P[canary]=10,50; P[canary_step_time]=30
     CANARY_TO=green; CANARY_SHARE=10
     canary_upstream_lines; canary_log_map | grep '~'; canary_seconds
     WATCH_FROM=1; watch_log_line block`
  )
  expect(
    out
      .trim()
      .split('\n')
      .map((l) => l.trim())
  ).toEqual([
    '# canary: 10 % of clients (told apart by $cookie_id) to green, the others to blue',
    'hash $cookie_id;',
    'server 10.0.0.1:8082 weight=10;',
    'server 10.0.0.1:8081 weight=90;',
    'server 10.0.0.2:8082 weight=10;',
    'server 10.0.0.2:8081 weight=90;',
    '"~^1 (.*[ ,] )?[^ ,]*:8082$" 1;',
    '60',
    `access_log ${dir}/access.log combined if=$bgd_shop;`,
    `access_log ${dir}/canary.log combined if=$bgd_shop_canary;`
  ])
  // both formats; a retry's address list ends with the one that answered
  writeFileSync(
    path.join(dir, 'canary.log'),
    [
      '2000.100 200',
      '2000.200 502',
      '127.0.0.1 - - [06/Dec/2026:10:21:28 +0000] "GET /a\\x22b HTTP/1.1" 500 12 "-" "load"'
    ].join('\n') + '\n'
  )
  const size = String(readFileSync(path.join(dir, 'canary.log')).length)
  expect(
    withFunctions(
      `canary_tally ${dir}/canary.log 0 ${size}; canary_tally ${dir}/canary.log 13 ${size}; canary_tally ${dir}/none 0 5`
    )
      .trim()
      .split('\n')
  ).toEqual(['3 2', '2 2', '0 0'])
})

test("the watch reads nginx's combined format too (a block with logs of its own), in whole seconds: the switch's own second counts for neither color", () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'bgd-watch-'))
  const at = (t: string, status: number, request = 'GET / HTTP/1.1') =>
    `127.0.0.1 - - [${t}] "${request}" ${status} 12 "-" "load"`
  // 1796552489 is 06/Dec/2026:10:21:29 UTC; nginx writes a " in the request as \x22
  writeFileSync(
    path.join(dir, 'access.log'),
    [
      '1796552487.500 200',
      at('06/Dec/2026:10:21:28 +0000', 500),
      at('06/Dec/2026:10:21:29 +0000', 502, 'GET /a\\x22 b" HTTP/1.1'),
      at('06/Dec/2026:11:21:30 +0100', 200),
      at('06/Dec/2026:10:21:31 +0000', 503),
      '1796552491.700 200'
    ].join('\n') + '\n'
  )
  const out = withFunctions(
    `STATE_DIR=${dir}; WATCH_FROM=1796552487; WATCH_SWITCHED=1796552489500
     watch_count; echo "$WATCH_TOTAL $WATCH_BAD $WATCH_BASE_TOTAL $WATCH_BASE_BAD"`
  )
  expect(out.trim()).toBe('3 1 2 1')
})

describe("the watch's check of nginx's effective config (nginx -T)", () => {
  const up = '/etc/nginx/conf.d/app-upstream.conf'
  const inc = '/etc/nginx/conf.d/app-upstream.watch.inc'
  /** The verdicts for a dump made of FILES (path -> text), nginx.conf first. */
  function verdicts(files: Record<string, string>): string[] {
    const dump = Object.entries(files)
      .map(([f, text]) => `# configuration file ${f}:\n${text}\n`)
      .join('\n')
    const dir = mkdtempSync(path.join(tmpdir(), 'bgd-nginx-t-'))
    writeFileSync(path.join(dir, 'dump'), dump)
    return withFunctions(
      `nginx_log_verdicts app /var/lib/bg-deploy/app/access.log ${inc} <${dir}/dump`
    )
      .trim()
      .split('\n')
  }
  const main = (http: string) => ({
    '/etc/nginx/nginx.conf': `http {\n  ${http}\n  include /etc/nginx/conf.d/*.conf;\n  include sites-enabled/*;\n}`,
    [up]: 'upstream app { server 127.0.0.1:8001; }\naccess_log /var/lib/bg-deploy/app/access.log bgd_app if=$bgd_app;'
  })

  test('a site that inherits the http-level log (Debian) is seen through the upstream file', () => {
    expect(
      verdicts({
        ...main('access_log /var/log/nginx/access.log;'),
        '/etc/nginx/sites-enabled/app':
          'server {\n  listen 80;\n  location / { proxy_pass http://app; }\n}'
      })
    ).toEqual([
      'http\t\t/etc/nginx/nginx.conf:1\t/etc/nginx/sites-enabled/app:3\t/etc/nginx/sites-enabled/app:1'
    ])
  })

  test('a server block with an access_log of its own needs the include of ours; with it, the include carries the line', () => {
    const site = (extra: string) =>
      `server { # the site\n  access_log "/var/log/nginx/app.log" ;\n  ${extra}\n  location / {\n    proxy_pass http://app/;\n  }\n}`
    expect(verdicts({ ...main(''), '/etc/nginx/sites-enabled/app': site('') })).toEqual([
      'need\tserver\t/etc/nginx/sites-enabled/app:1\t/etc/nginx/sites-enabled/app:4\t/etc/nginx/sites-enabled/app:1'
    ])
    expect(
      verdicts({
        ...main(''),
        '/etc/nginx/sites-enabled/app': site(`include ${inc};`),
        [inc]: '# ours'
      })
    ).toEqual([
      `ours\t${inc}\t/etc/nginx/sites-enabled/app:1\t/etc/nginx/sites-enabled/app:4\t/etc/nginx/sites-enabled/app:1`
    ])
  })

  test('access_log off: at the http level the include of ours makes it so; in the block itself, no file can', () => {
    const site = (extra: string) =>
      `server {\n  ${extra}\n  location / { proxy_pass http://app; }\n  location /api/ { access_log off; proxy_pass http://app; }\n  location /other/ { proxy_pass http://other; }\n}`
    expect(
      verdicts({ ...main('access_log off;'), '/etc/nginx/sites-enabled/app': site('') })
    ).toEqual([
      'off\thttp\t/etc/nginx/nginx.conf:2\t/etc/nginx/sites-enabled/app:3\t/etc/nginx/sites-enabled/app:1',
      'off\tlocation\t/etc/nginx/sites-enabled/app:4\t/etc/nginx/sites-enabled/app:4\t/etc/nginx/sites-enabled/app:1'
    ])
    expect(
      verdicts({
        ...main('access_log off;'),
        '/etc/nginx/sites-enabled/app': site(`include ${inc};`),
        [inc]: '# ours'
      })[0]
    ).toBe(
      `ours\t${inc}\t/etc/nginx/sites-enabled/app:1\t/etc/nginx/sites-enabled/app:3\t/etc/nginx/sites-enabled/app:1`
    )
  })

  test('no block proxies to the upstream by its name', () => {
    expect(
      verdicts({
        ...main(''),
        '/etc/nginx/sites-enabled/x': 'server { location / { proxy_pass http://$b; } }'
      })
    ).toEqual(['none'])
  })
})

describe('a deploy that waits for the runner’s build (build_wait)', () => {
  /** The whole script against a fake docker that knows no containers, with `commands` after the secrets. */
  function waiting(commands: string) {
    const dir = mkdtempSync(path.join(tmpdir(), 'bgd-await-'))
    fakeBin(
      path.join(dir, 'bin'),
      'docker',
      `echo "$*" >>"${dir}/docker-calls"
case "$1" in info) echo true ;; version) echo 20 ;; *) exit 1 ;; esac`
    )
    const started = Date.now()
    const r = spawnSync(
      'bash',
      [
        '-s',
        '--',
        'app=w',
        'image=r/w:v2',
        'version=v2',
        `state_dir=${dir}/state`,
        `upstream_file=${dir}/upstream.conf`,
        'upstream_name=w',
        'build_wait=1'
      ],
      {
        input: `${script}\nend\n${commands}`,
        env: { PATH: `${dir}/bin:${process.env.PATH}`, HOME: dir },
        encoding: 'utf8'
      }
    )
    const calls = readFileSync(path.join(dir, 'docker-calls'), 'utf8').trim().split('\n')
    return { ...r, calls, ms: Date.now() - started, dir }
  }

  test('it reports locked, and without a word within build_wait gives up (exit 75): no container touched, the lock free', () => {
    const r = waiting('')
    expect(r.stdout).toMatch(
      /^::bg-deploy-await:: locked color=blue previous_color= previous_version=$/m
    )
    expect(r.stdout).toMatch(/::bg-deploy-error:: no image from the runner within 1s/)
    expect(r.status).toBe(75)
    // only questions to Docker (info, inspect, version): no pull, run, rm or start
    expect(r.calls.filter((c) => !/^(info|inspect|version) /.test(c))).toEqual([])
    expect(spawnSync('flock', ['-n', path.join(r.dir, 'state', 'lock'), 'true']).status).toBe(0)
  })

  test('`abort` ends it at once, having changed nothing', () => {
    const r = waiting('abort\n')
    expect(r.status).toBe(1)
    expect(r.stdout).toMatch(
      /::bg-deploy-error:: the runner's build or release failed \(it said abort\): nothing was changed here/
    )
    expect(r.calls.filter((c) => !/^(info|inspect|version) /.test(c))).toEqual([])
    expect(existsSync(path.join(r.dir, 'upstream.conf'))).toBe(false)
  })

  test('`pull` goes on to the pull', () => {
    const r = waiting('pull\n')
    expect(r.calls).toContain('pull -- r/w:v2')
    expect(r.stdout).toMatch(/::bg-deploy-event:: pull \d+/)
  })
})

test('a long pull says how far it is every 5 s, and leaves nothing running behind it', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'bgd-pull-'))
  fakeBin(
    path.join(dir, 'bin'),
    'docker',
    `case "$1" in
  pull) echo 'aaa: Pulling fs layer'; echo 'bbb: Pulling fs layer'; echo 'ccc: Already exists'
        echo 'aaa: Pull complete'; sleep 6; echo 'bbb: Pull complete' ;;
  *) exit 0 ;;
esac`
  )
  mkdirSync(path.join(dir, 'state'))
  const started = Date.now()
  const out = withFunctions(
    `P[registry_user]=''; STATE_DIR=${dir}/state; RUN_IMAGE=r/app:v2; pull_image; echo pulled-ok`,
    { PATH: `${dir}/bin:${process.env.PATH}` }
  )
  const ms = Date.now() - started
  expect(out).toMatch(/==> still pulling r\/app:v2: 5s, 2 of 3 layers done/)
  expect(out).toContain('pulled-ok')
  // the heartbeat's sleep is gone with it: bash's output ended right after the pull (6 s)
  expect(ms).toBeLessThan(9000)
  expect(readdirSync(path.join(dir, 'state'))).toEqual([])
}, 20_000)

test('a long health wait says how long it has waited and the last answer, every 5 s', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'bgd-health-'))
  fakeBin(path.join(dir, 'bin'), 'docker', 'echo "running 0 0 "')
  const out = withFunctions(
    `P[app]=a; P[blue_port]=1; P[health_path]=/; P[health_timeout]=6; P[health_interval]=0.2
     health_probe() { printf 503; }
     health_failed() { echo "failed: $2"; exit 0; }
     health_wait blue`,
    { PATH: `${dir}/bin:${process.env.PATH}` }
  )
  expect(out).toMatch(/==> still waiting for a-blue: 5s of 6s, last: HTTP 503/)
  expect(out).toMatch(/failed: a-blue did not answer 2xx on \/ within 6s \(last: 503\)/)
}, 20_000)

test('fast pulls leave no heartbeat behind holding the session open', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'bgd-pullfast-'))
  // a pull from a registry nearby: some tens of milliseconds
  fakeBin(path.join(dir, 'bin'), 'docker', 'sleep 0.03')
  mkdirSync(path.join(dir, 'state'))
  const started = Date.now()
  // a heartbeat's sleep that outlived its kill would keep this bash's output open for up to 5 s
  const out = withFunctions(
    `P[registry_user]=''; STATE_DIR=${dir}/state; RUN_IMAGE=r/app:v2
     for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do pull_image; done; echo done`,
    { PATH: `${dir}/bin:${process.env.PATH}` }
  )
  expect(out).toContain('done')
  expect(Date.now() - started).toBeLessThan(4000)
}, 20_000)

describe('each host reads exactly the secrets its steps use', () => {
  const lines: Record<SecretLine, string> = {
    registry_password: `registry_password ${b64('pull-pw')}`,
    env: `env K ${b64('v')}`,
    run_arg: `run_arg ${b64('--memory')}`,
    accessory: `accessory ${b64('db\0r/db:1\0\0' + '0\0' + '0\0')}`
  }
  /** Which secret lines the script accepts from stdin, run as `role` (or action=status). */
  function accepted(role: Role | 'status'): SecretLine[] {
    const params = role === 'status' ? 'action=status' : `role=${role}`
    return (Object.keys(lines) as SecretLine[]).filter((name) => {
      const r = spawnSync(
        'bash',
        [
          '-c',
          `source ${functionsFile}\nparams_parse app=x image=r/x:v1 ${params}\nparams_read_secrets`
        ],
        { input: `${lines[name]}\nend\n`, encoding: 'utf8' }
      )
      if (r.status !== 0) expect(r.stdout + r.stderr).toMatch(/does not read: refused/)
      return r.status === 0
    })
  }
  test.each([...ROLES, 'status'] as const)(
    'role %s: the script reads what the runner sends it, and refuses any other line',
    (role) => {
      const reads = accepted(role)
      expect(reads).toEqual(role === 'status' ? [] : [...ROLE_SECRETS[role]])
      // the runner sends that and nothing else, even when the config has every kind of secret
      const config = testConfig({
        'pull-registry-username': 'r',
        'pull-registry-password': 'pull-pw',
        env: 'K=v',
        'docker-run-args': '--memory 1g'
      })
      // and an accessory, as compose-file gives one (a database with its password)
      config.app.accessories.push({
        name: 'db',
        image: 'r/db:1',
        args: [],
        env: [['POSTGRES_PASSWORD', 'pw']],
        command: []
      })
      const sent = new Set(
        remoteStdin('', config, role)
          .split('\n')
          .filter((l) => l && l !== 'end')
          .map((l) => l.split(' ')[0])
      )
      expect([...sent].sort()).toEqual([...reads].sort())
    }
  )
  test('the load balancer gets no secret: none of its reads is a secret line', () => {
    expect(ROLE_SECRETS.lb).toEqual([])
  })
})

test('engine swarm: no env value is in any argument list of docker or its parents, yet docker gets every value', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'bgd-swarm-'))
  const secretA = 'sw0rdfish-value-A'
  const secretB = 'has spaces and $(id) `x`'
  // a docker that records its arguments, its parent's (timeout) and the values it can see
  fakeBin(
    path.join(dir, 'bin'),
    'docker',
    `printf '%s\\n' "$*" >>"${dir}/argv"
tr '\\0' ' ' </proc/$PPID/cmdline >>"${dir}/argv"; echo >>"${dir}/argv"
case "$*" in
  *"service inspect -f"*) echo 'completed|' ;;
  *"service inspect"*) [[ -f "${dir}/exists" ]] || exit 1 ;;
  *"service update"*|*"service create"*)
    printf 'A=%s\\nB=%s\\n' "\${SECRET_A-}" "\${SECRET_B-}" >>"${dir}/env"
    for f in "$@"; do [[ "$f" == */.env.* ]] && cat "$f" >>"${dir}/env"; done
    touch "${dir}/exists" ;;
esac
exit 0`
  )
  const deploy = () =>
    withFunctions(
      `STATE_DIR=${dir}/state; mkdir -p "$STATE_DIR"
P[app]=shop; P[engine]=swarm; P[health_timeout]=5; P[watch]=0
RUN_IMAGE=r/shop:v2; RUN_VERSION=v2
ENV_KEYS=(SECRET_A SECRET_B); ENV_VALUES=("$VALUE_A"x "$VALUE_B"x); unset VALUE_A VALUE_B
swarm_deploy`,
      // the values come in through the environment, so that this test's own bash -c holds none
      { PATH: `${dir}/bin:${process.env.PATH}`, VALUE_A: secretA, VALUE_B: secretB }
    )
  deploy() // created: the values in an owner-only file, read by docker, removed
  deploy() // updated: the values in docker's environment, --env-add KEY only
  const argv = readFileSync(path.join(dir, 'argv'), 'utf8')
  expect(argv).toMatch(/service create/)
  expect(argv).toMatch(/service update .*--env-add SECRET_A --env-add SECRET_B/)
  for (const s of [secretA, 'sw0rdfish', 'has spaces']) expect(argv).not.toContain(s)
  const seen = readFileSync(path.join(dir, 'env'), 'utf8')
  expect(seen).toContain(`SECRET_A=${secretA}\nSECRET_B=${secretB}\n`) // create: the env file
  expect(seen).toContain(`A=${secretA}\nB=${secretB}\n`) // update: the CLI's environment
  expect(readdirSync(path.join(dir, 'state'))).toEqual([])
})

test('the preview file is written through a new temporary file, never through a link left at a predictable name', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'bgd-pv-'))
  const conf = path.join(dir, 'conf.d')
  mkdirSync(conf)
  const victim = path.join(dir, 'victim')
  writeFileSync(victim, 'keep me\n')
  symlinkSync(victim, path.join(conf, 'shop-preview.conf.tmp'))
  withFunctions(`P[app]=shop; P[upstream_name]=shop; P[preview_file]=${conf}/shop-preview.conf
preview_write
main_cleanup`)
  expect(readFileSync(victim, 'utf8')).toBe('keep me\n')
  expect(readFileSync(path.join(conf, 'shop-preview.conf'), 'utf8')).toMatch(
    /^# Managed by bg-deploy \(app shop\)[\s\S]*location \/green\/ \{ proxy_pass http:\/\/shop-green\/; \}\n[\s\S]*proxy_pass http:\/\/shop-green; \}\n$/
  )
  expect(readdirSync(conf).sort()).toEqual(['shop-preview.conf', 'shop-preview.conf.tmp'])
  expect(statSync(path.join(conf, 'shop-preview.conf')).mode & 0o777).toBe(0o644)
})

test('a version’s run spec round-trips through its record: env values with spaces and newlines, run arguments; a rollback’s own inputs win and are named', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'bgd-spec-'))
  const out = withFunctions(`
    STATE_DIR='${dir}'; P[app]=a
    P[container_port]=9000; P[health_path]=/up; P[network]=net1
    ENV_KEYS=(A PEM); ENV_VALUES=('one two x' $'l1\\nl2\\n''x')
    RUN_ARGS=(--label 'x=has space')
    RUN_VERSION=v1.0.0; spec_save
    stat -c '%a' '${dir}/specs' '${dir}/specs/v1.0.0'
    # a rollback run with defaults and nothing of its own
    P[container_port]=8080; P[health_path]=/; P[network]=''; ENV_KEYS=(); ENV_VALUES=(); RUN_ARGS=()
    spec_load
    printf 'port=%s path=%s net=%s\\n' "\${P[container_port]}" "\${P[health_path]}" "\${P[network]}"
    printf 'env=%s|%s\\n' "\${ENV_KEYS[*]}" "\${ENV_VALUES[1]%x}"
    printf 'args=%s|%s\\n' "\${#RUN_ARGS[@]}" "\${RUN_ARGS[1]}"
    spec_changes_container || echo 'kept container fits'
    # a rollback that sets its own env and the same health path
    P[explicit]=env,health_path; P[health_path]=/up; ENV_KEYS=(A); ENV_VALUES=('otherx')
    spec_load
    printf 'env=%s overrides=%s\\n' "\${ENV_VALUES[0]%x}" "$SPEC_OVERRIDES"
    spec_changes_container && echo 'a new container'
    RUN_VERSION=v9; spec_load
  `)
  expect(out).toContain('700\n600\n')
  expect(out).toContain('port=9000 path=/up net=net1\n')
  expect(out).toContain('env=A PEM|l1\nl2\n\n')
  expect(out).toContain('args=2|x=has space\n')
  expect(out).toContain('kept container fits\n')
  expect(out).toMatch(
    /putting v1\.0\.0 back as it ran: container_port, health_path, network, env \(2 variable\(s\)\), docker run arguments \(2\) from its record\n/
  )
  expect(out).toContain('env=other overrides=env\n')
  expect(out).toContain('this run sets its own env\n')
  expect(out).toContain('a new container\n')
  expect(out).toMatch(/no run spec is recorded for v9 on this server/)
})
