// The server script is a set of files under src/remote, one per step (steps/) and per thing it
// works with (lib/), with main.sh last. `npm run bundle` joins them, in the order below, into
// build/deploy.sh, which the bundle ships as dist/deploy.sh: the one script the action sends on
// stdin. Each part starts with a marker line, so a line number in an error maps back to its file.
//   node scripts/join-remote.mjs [OUT]   (default: print to stdout)
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

export const PARTS = [
  'lib/output.sh',
  'lib/params.sh',
  'lib/state.sh',
  'lib/docker.sh',
  'lib/nginx.sh',
  'lib/nat.sh',
  'lib/commands.sh',
  'steps/lock.sh',
  'steps/detect.sh',
  'steps/target.sh',
  'steps/await.sh',
  'steps/pull.sh',
  'steps/start.sh',
  'steps/health.sh',
  'steps/switch.sh',
  'steps/watch.sh',
  'steps/drain.sh',
  'steps/stop.sh',
  'steps/preview.sh',
  'steps/undo.sh',
  'steps/swarm.sh',
  'main.sh'
]

const REMOTE = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'src', 'remote')

/** The whole script: every part, in order, each after a `# ==== src/remote/PART` line. */
export function joinRemote(dir = REMOTE) {
  return PARTS.map((part, i) => {
    const text = readFileSync(path.join(dir, part), 'utf8')
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
