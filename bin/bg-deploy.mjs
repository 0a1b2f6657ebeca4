#!/usr/bin/env node
// `npx bg-deploy deploy|rollback|status`: the action's own bundle, started as the command line
// (src/cli.ts). It marks itself first; the runner starts dist/index.js without the mark.
globalThis.bgDeployCli = true
await import('../dist/index.js')
