// The server script is a set of files under src/remote, one per step (steps/) and per thing it
// works with (lib/), with main.sh last. `npm run bundle` joins them, in the order below, into
// build/deploy.sh, which the bundle ships as dist/deploy.sh: the one script the action sends on
// stdin. Each part starts with a marker line, so a line number in an error maps back to its file.
// One part is not a file: `protocol.sh` is generated here from src/remote/protocol.ts, the vocabulary the
// action and the script share, so that it is declared once.
//   node scripts/join-remote.mjs [OUT]   (default: print to stdout)
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import ts from 'typescript'

export const PARTS = [
  'lib/output.sh',
  'protocol.sh',
  'lib/params.sh',
  'lib/state.sh',
  'lib/docker.sh',
  'lib/nginx.sh',
  'lib/nginx-log.sh',
  'lib/nat.sh',
  'lib/commands.sh',
  'steps/lock.sh',
  'steps/detect.sh',
  'steps/target.sh',
  'steps/spec.sh',
  'steps/await.sh',
  'steps/pull.sh',
  'steps/accessories.sh',
  'steps/task.sh',
  'steps/start.sh',
  'steps/health.sh',
  'steps/workers.sh',
  'steps/switch.sh',
  'steps/canary.sh',
  'steps/watch.sh',
  'steps/drain.sh',
  'steps/stop.sh',
  'steps/preview.sh',
  'steps/undo.sh',
  'steps/swarm.sh',
  'steps/check.sh',
  'roles/fleet.sh',
  'roles/lb.sh',
  'main.sh'
]

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..')
const REMOTE = path.join(ROOT, 'src', 'remote')

/** src/remote/protocol.ts, evaluated (it imports nothing): its declarations as values. */
export function loadProtocol(file = path.join(ROOT, 'src', 'remote', 'protocol.ts')) {
  const js = ts.transpileModule(readFileSync(file, 'utf8'), {
    compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022 }
  }).outputText
  const module = { exports: {} }
  new Function('exports', 'module', js)(module.exports, module)
  return module.exports
}

/** A bash word for a value: bare when it is plain, else in single quotes. */
const word = (v) => (/^[\w./-]+$/.test(v) ? v : `'${v.replace(/'/g, `'\\''`)}'`)

/** The script's side of the protocol, generated: the part `protocol.sh`. */
export function protocolPart(p = loadProtocol()) {
  const params = Object.entries(p.PARAMETERS).map(([k, v]) => `[${k}]=${word(v)}`)
  const rows = []
  for (let i = 0; i < params.length; i += 6) rows.push(`  ${params.slice(i, i + 6).join(' ')}`)
  const secrets = Object.entries(p.ROLE_SECRETS).map(
    ([role, lines]) => `  [${role}]=${word(lines.join(' '))}`
  )
  const exits = Object.entries(p.EXIT_CODES).map(([k, v]) => `EXIT_${k.toUpperCase()}=${v}`)
  return `# Generated from src/remote/protocol.ts by scripts/join-remote.mjs: edit that file, not this part.
# The parameters (\`key=value\` arguments) with their defaults, what each role reads of the secret
# lines, the result line's fields, the stages and the exit codes the action knows.

declare -A P=(
${rows.join('\n')}
)

# The secret lines each role's steps read (action status reads none).
declare -A PROTOCOL_ROLE_SECRETS=(
${secrets.join('\n')}
)

PROTOCOL_RESULT_FIELDS=(${p.RESULT_FIELDS.join(' ')})

# A version's run spec: the parameters recorded with it (the secret lines env and run_arg too).
PROTOCOL_RUN_SPEC_PARAMETERS=(${p.RUN_SPEC_PARAMETERS.join(' ')})

PROTOCOL_STAGES=(${p.STAGES.join(' ')})

${exits.join('\n')}

# The result line: one value per field of PROTOCOL_RESULT_FIELDS, in order (missing ones empty);
# previous_version is the version serving when the run took the lock (PREVIOUS_VERSION, main.sh).
PREVIOUS_VERSION=''
result_print() { # result_print DEPLOYED COLOR PREVIOUS_COLOR VERSION IMAGE [OPEN_CONNECTIONS] [WATCH]
  local i line=''
  for ((i = 1; i <= $#; i++)); do line+="\${line:+ }\${PROTOCOL_RESULT_FIELDS[i - 1]}=\${!i}"; done
  marker result "$line previous_version=$PREVIOUS_VERSION"
}
`
}

/** The whole script: every part, in order, each after a `# ==== src/remote/PART` line. */
export function joinRemote(dir = REMOTE) {
  return PARTS.map((part, i) => {
    const text =
      part === 'protocol.sh' ? protocolPart() : readFileSync(path.join(dir, part), 'utf8')
    // the shebang stays the first line
    if (i === 0 && text.startsWith('#!')) {
      const nl = text.indexOf('\n') + 1
      return `${text.slice(0, nl)}# ==== src/remote/${part}\n${text.slice(nl)}`
    }
    return `# ==== src/remote/${part}\n${text}`
  }).join('\n')
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const out = process.argv[2]
  if (out) {
    mkdirSync(path.dirname(out), { recursive: true })
    writeFileSync(out, joinRemote())
  } else process.stdout.write(joinRemote())
}
