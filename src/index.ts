import './shim.js'
import { cli } from './cli.js'
import { run } from './main.js'

// bin/bg-deploy.mjs (the command line) marks itself before it loads this bundle; the runner
// starts it plainly (node dist/index.js)
if ((globalThis as { bgDeployCli?: boolean }).bgDeployCli)
  process.exitCode = await cli(process.argv.slice(2))
else await run()
