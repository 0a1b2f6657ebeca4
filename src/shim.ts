// ssh2 (bundled into an ES module by ncc) reads __dirname/__filename, which ES modules lack.
// This module must be imported before anything that loads ssh2.
import { fileURLToPath } from 'node:url'
import path from 'node:path'

const g = globalThis as { __filename?: string; __dirname?: string }
g.__filename ??= fileURLToPath(import.meta.url)
g.__dirname ??= path.dirname(g.__filename)
