#!/usr/bin/env bash
# The whole suite on a fresh machine (`npm test`): a dist/ freshness check, the real services
# (installed and started by scripts/services.sh), lint, the demo and a one-round benchmark as smoke
# tests of `npm run demo` and `npm run bench`, then every unit and end-to-end test; everything it
# started is stopped again, and the last line is the tests' count.
set -Eeuo pipefail
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*" >&2; }

log "bundle, and check dist/ is what src/ builds"
npm run -s bundle
if [[ -n "$(git status --porcelain -- dist 2>/dev/null)" ]]; then
  git status --short -- dist >&2
  echo "dist/ differs from a fresh 'npm run bundle': rebuild and commit it." >&2
  exit 1
fi

started_services=0
# shellcheck disable=SC2317 # called by the EXIT trap and at the end
cleanup() {
  if [[ "$started_services" == 1 ]]; then
    started_services=0
    node scripts/demo.mjs --down >&2 || bash scripts/services.sh down || true
  fi
}
trap cleanup EXIT
log "start the real services"
started_services=1
bash scripts/services.sh up

log "lint"
npm run -s lint

log "npm run demo"
node scripts/demo.mjs

log "npm run bench -- --runs 1 --servers 1,3 (smoke test; results in .e2e/bench, docs untouched; ten servers only in npm run bench)"
node bench/run.mjs --runs 1 --out .e2e/bench --no-readme --servers 1,3

log "soak, short: 10 runs in a row under load (npm run soak: 100)"
node bench/soak.mjs --runs 10 --out .e2e/soak

log "tests (unit and end to end)"
mkdir -p .e2e
rc=0
NODE_OPTIONS=--experimental-vm-modules npx jest --runInBand --json --outputFile=.e2e/jest.json "$@" || rc=$?
cleanup
# shellcheck disable=SC2016 # JavaScript, not shell
node -e '
  const r = require(process.argv[1]);
  console.log(`${r.numPassedTests} passed, ${r.numFailedTests} failed, ${r.numPendingTests} skipped`);
' "$PWD/.e2e/jest.json" || true
exit "$rc"
