// The optional YAML config file (`config` input): its keys are input names, its values strings,
// numbers, booleans or lists; secrets are refused there. Inputs given to the step win over it.
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { parseDocument, isMap, isScalar, isSeq } from 'yaml'
import { ConfigError } from './config-check.js'
import { INPUT_NAMES, SECRET_INPUTS, type InputName, type Inputs } from './config-inputs.js'

/** The inputs with the config file merged under them, when the `config` input names one. */
export function withConfigFile(explicit: Inputs, workspace: string): Inputs {
  if (!explicit.config) return explicit
  const file = path.resolve(workspace, explicit.config)
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (e) {
    throw new ConfigError([
      `Input 'config': cannot read '${explicit.config}' (${(e as NodeJS.ErrnoException).code ?? e}). Expected a YAML file path relative to the workspace.`
    ])
  }
  return mergeInputs(parseConfigFile(text, explicit.config), explicit)
}

/** Parse the YAML config file into inputs. Errors give the file, line and column. */
export function parseConfigFile(text: string, file: string): Inputs {
  const doc = parseDocument(text, { prettyErrors: false, uniqueKeys: true })
  if (doc.errors.length > 0) {
    const e = doc.errors[0]!
    throw new ConfigError([
      `config file ${file}${lineOf(text, e.pos[0])}: ${e.message.split('\n')[0]}`
    ])
  }
  if (doc.contents === null) return {}
  if (!isMap(doc.contents))
    throw new ConfigError([`config file ${file}: expected a mapping of input names to values`])
  const inputs: Inputs = {}
  const problems: string[] = []
  for (const pair of doc.contents.items) {
    const key = isScalar(pair.key) ? String(pair.key.value) : String(pair.key)
    const line = lineOf(text, (pair.key as { range?: number[] } | null)?.range?.[0])
    const at = `config file ${file}${line}`
    if (!(INPUT_NAMES as readonly string[]).includes(key)) {
      problems.push(`${at}: unknown input '${key}'. Expected one of the inputs in action.yml.`)
      continue
    }
    const name = key as InputName
    if (SECRET_INPUTS.includes(name) || name === 'config') {
      problems.push(
        name === 'config'
          ? `${at}: 'config' cannot be set inside the config file.`
          : `${at}: '${name}' is a secret and must not be committed in a file; pass it as an input from \${{ secrets.* }}.`
      )
      continue
    }
    const value = pair.value
    if (isScalar(value)) {
      if (value.value !== null) inputs[name] = String(value.value)
    } else if (isSeq(value)) {
      inputs[name] = value.items.map((v) => String(isScalar(v) ? v.value : v)).join('\n')
    } else if (isMap(value) && name === 'build-args') {
      inputs[name] = value.items
        .map(
          (p) =>
            `${String(isScalar(p.key) ? p.key.value : p.key)}=${String(isScalar(p.value) ? p.value.value : p.value)}`
        )
        .join('\n')
    } else if (value !== null) {
      problems.push(`${at}: '${name}' must be a string, number, boolean or list.`)
    }
  }
  if (problems.length > 0) throw new ConfigError(problems)
  return inputs
}

function lineOf(text: string, offset: number | undefined): string {
  if (offset === undefined) return ''
  const before = text.slice(0, offset).split('\n')
  return `:${before.length}:${before[before.length - 1]!.length + 1}`
}

/** Inputs given to the step win over the file. */
export function mergeInputs(fromFile: Inputs, explicit: Inputs): Inputs {
  return { ...fromFile, ...explicit }
}
