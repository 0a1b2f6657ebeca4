// The watch over several servers, each with its own nginx (a run over several servers without a
// load balancer, src/fleet.ts): the runner sums what every server's nginx logged and decides for
// all of them, as one server decides for itself (src/remote/steps/watch.sh).
import type { Config } from './config.js'
import type { Running } from './fleet.js'
import type { WatchCounts } from './remote/answer.js'

/**
 * P(X >= b) for X ~ Binomial(n, q): the chance that a version whose share of 5xx were q gives b or
 * more in n answers (steps/watch.sh computes it the same way, in awk).
 */
export function binomialTail(n: number, b: number, q: number): number {
  if (b <= n * q) return 1
  if (q <= 0) return 0
  if (q >= 1) return 1
  let lc = 0
  for (let i = 1; i <= b; i++) lc += Math.log((n - b + i) / i)
  let t = Math.exp(lc + b * Math.log(q) + (n - b) * Math.log(1 - q))
  let s = 0
  for (let k = b; k <= n && t > 0; k++) {
    s += t
    if (t < s * 1e-12) break
    t *= ((n - k) / (k + 1)) * (q / (1 - q))
  }
  return s
}

/** The share of 5xx (percent) in `bad` of `total`. */
const share = (total: number, bad: number) => (total > 0 ? (bad * 100) / total : 0)

/**
 * The watch over several servers, each with its own nginx: every server reports what its nginx
 * logged (`watching`, repeated); the runner sums them and judges the sum as one server judges its
 * own (steps/watch.sh). The reason for a breach (none when the window passed), and the sums.
 */
export async function watchFleet(
  apps: Running[],
  config: Config
): Promise<{ breach?: string; counts: WatchCounts }> {
  const { watch, maxErrorRate, maxHealthFailures } = config.after
  const start = Date.now()
  const counts: WatchCounts = { total: 0, bad: 0, baseTotal: 0, baseBad: 0 }
  for (;;) {
    await new Promise((r) => setTimeout(r, 200))
    const ended = apps.find((r) => r.settled !== undefined)
    if (ended)
      return {
        breach: `${ended.name} ended during the watch: ${ended.settled instanceof Error ? ended.settled.message : 'without a word'}`,
        counts
      }
    const seen = apps.map((r) => r.session.latest('watching') ?? {})
    const sum = (k: string) => seen.reduce((n, f) => n + (Number(f[k]) || 0), 0)
    const [total, bad, baseTotal, baseBad] = ['total', 'bad', 'base_total', 'base_bad'].map(
      sum
    ) as [number, number, number, number]
    Object.assign(counts, { total, bad, baseTotal, baseBad })
    const base = baseTotal >= 20 ? share(baseTotal, baseBad) : 0
    const limit = base + maxErrorRate
    const sick = apps.find((_, i) => Number(seen[i]!.fails) >= maxHealthFailures)
    if (sick)
      return {
        breach: `the health check of ${sick.name} failed ${maxHealthFailures} times in a row`,
        counts
      }
    const over = Date.now() - start >= watch * 1000
    const figures = `every server's nginx answered ${total} request(s) for it, ${bad} of them 5xx (${share(total, bad).toFixed(1)} %); before the switch the previous version answered ${baseTotal}, ${baseBad} of them 5xx (${share(baseTotal, baseBad).toFixed(1)} %)${baseTotal >= 20 ? '' : ', too few to compare with'}`
    // before the end, only an excess beyond chance, as steps/watch.sh
    const beyondChance = over || binomialTail(total, bad, limit / 100) < 0.001
    if (total > 0 && bad * 100 > limit * total && beyondChance)
      return {
        breach: `${bad} of its ${total} answers were 5xx, more than ${Number(limit.toFixed(1))} %; ${figures}`,
        counts
      }
    if (over) return { counts }
  }
}
