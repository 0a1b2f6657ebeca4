// Checking inputs: one collector that every group of inputs reports to, so that a user sees every
// problem at once. Messages name the input, quote the value (whole, never cut; never for inputs
// that are or can hold secrets) and say what is expected.
import { defaultOf, SECRET_INPUTS, type InputName, type Inputs } from './config-inputs.js'

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(
      problems.length === 1
        ? problems[0]
        : `${problems.length} inputs are invalid:\n${problems.map((p) => `- ${p}`).join('\n')}`
    )
    this.name = 'ConfigError'
  }
}

/** Inputs whose value no message quotes: the secrets, and those that can embed one. */
const UNQUOTED_INPUTS: readonly InputName[] = [...SECRET_INPUTS, 'build-args', 'docker-run-args']

export const noControl = (v: string) => !/[\0-\x1f\x7f]/.test(v)

export class Collector {
  readonly problems: string[] = []

  constructor(
    private readonly inputs: Inputs,
    private readonly unquoted: readonly InputName[] = []
  ) {}

  /** A problem with an input's value; returns undefined so callers can fall back. */
  bad(name: InputName, expected: string): undefined {
    // a value is quoted whole or not at all: a cut-off secret would be printed unmasked (GitHub
    // masks a secret only whole), and these inputs can hold one
    const shown =
      UNQUOTED_INPUTS.includes(name) || this.unquoted.includes(name)
        ? ''
        : ` '${this.inputs[name] ?? ''}'`
    this.problems.push(`Invalid ${name}${shown}. Expected ${expected}.`)
    return undefined
  }

  missing(name: InputName, hint: string): undefined {
    this.problems.push(`Input '${name}' is required: ${hint}.`)
    return undefined
  }

  /** A problem that concerns several inputs, said in full. */
  add(problem: string): void {
    this.problems.push(problem)
  }

  /** The value, or undefined when empty or blank. */
  get(name: InputName): string | undefined {
    const v = this.inputs[name]
    return v === undefined || v.trim() === '' ? undefined : v
  }

  text(name: InputName, fallback: string, ok: (v: string) => boolean, expected: string): string {
    const v = this.get(name)?.trim()
    if (v === undefined) return fallback
    if (v.includes('\0') || !ok(v)) return this.bad(name, expected) ?? fallback
    return v
  }

  bool(name: InputName, fallback = defaultOf(name) === 'true'): boolean {
    const v = this.get(name)?.trim()
    if (v === undefined) return fallback
    if (/^(true|True|TRUE)$/.test(v)) return true
    if (/^(false|False|FALSE)$/.test(v)) return false
    return this.bad(name, 'true or false') ?? fallback
  }

  num(
    name: InputName,
    min: number,
    max: number,
    integer: boolean,
    fallback = Number(defaultOf(name))
  ): number {
    const v = this.get(name)?.trim()
    if (v === undefined) return fallback
    const n = Number(v)
    const shape = integer ? /^\d+$/ : /^\d+(\.\d+)?$|^\.\d+$/
    if (!shape.test(v) || n < min || n > max)
      return (
        this.bad(name, `${integer ? 'a whole number' : 'a number'} from ${min} to ${max}`) ??
        fallback
      )
    return n
  }

  port(name: InputName): number {
    return this.num(name, 1, 65535, true)
  }

  /** Throw every problem collected, if any. */
  done(): void {
    if (this.problems.length > 0) throw new ConfigError(this.problems)
  }
}
