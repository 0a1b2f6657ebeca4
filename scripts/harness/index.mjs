// The parts the end-to-end tests, `npm run demo` and `npm run bench` share, one module per concern:
// the loopback services (services.mjs), the action run the way GitHub runs it (action.mjs), a
// stand-in for GitHub's release API (github.mjs), the registry (registry.mjs), a sample busybox app
// (app.mjs), load and HTTP (load.mjs), the test servers (fleet.mjs) and the swarm (swarm.mjs).
// Plain JavaScript so that node runs it as it is; the tests import it through
// __tests__/e2e/helpers.ts.
export * from './services.mjs'
export * from './action.mjs'
export * from './github.mjs'
export * from './registry.mjs'
export * from './app.mjs'
export * from './load.mjs'
export * from './fleet.mjs'
export * from './swarm.mjs'
