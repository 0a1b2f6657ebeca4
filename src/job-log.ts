// The action's own workflow commands (groups and annotations). Each one first ends any pause of
// the runner's command parser that foreign text began (foreign.ts), so the action's commands work
// whatever printed last, and foreign text never can issue one.
import * as core from '@actions/core'
import { foreignText } from './foreign.js'

export function startGroup(name: string): void {
  foreignText.resume()
  core.startGroup(name)
}

export function endGroup(): void {
  foreignText.resume()
  core.endGroup()
}

export async function group<T>(name: string, fn: () => Promise<T>): Promise<T> {
  startGroup(name)
  try {
    return await fn()
  } finally {
    endGroup()
  }
}

type Annotate = (message: string, properties?: core.AnnotationProperties) => void
const own =
  (f: Annotate): Annotate =>
  (message, properties) => {
    foreignText.resume()
    f(message, properties)
  }
export const warning = own(core.warning)
export const notice = own(core.notice)
export const error = own(core.error)
