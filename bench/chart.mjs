// The benchmark's chart (bench/chart.svg): what each tool served over time, in one SVG.

/**
 * "Version served over time": stacked bars of responses per 100 ms, old version, new version and
 * failures, for one deploy of each tool on the same time scale.
 * @param {{ title: string, stats: import('../scripts/harness/index.mjs').LoadStats, startedAt: number, prev: string, next: string, marks: [string, number][] }[]} panels
 */
export function chart(panels) {
  const binMs = 100
  const W = 900
  const H = 170
  const left = 60
  const right = 20
  const top = 56
  const spanMs = Math.max(...panels.map((p) => p.stats.t0 + p.stats.ms - p.startedAt)) + 200
  const x = (/** @type {number} */ ms) =>
    left + ((ms + 1000) / (spanMs + 1000)) * (W - left - right)
  const esc = (/** @type {string} */ s) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;')
  const parts = []
  panels.forEach((p, k) => {
    /** @type {Map<number, Record<string, number>>} */
    const bins = new Map()
    for (const [t, counts] of p.stats.timeline) {
      const rel = p.stats.t0 + t - p.startedAt
      const b = Math.floor(rel / binMs)
      const acc = bins.get(b) ?? {}
      for (const [v, n] of Object.entries(counts)) acc[v] = (acc[v] ?? 0) + n
      bins.set(b, acc)
    }
    const max = Math.max(
      1,
      ...[...bins.values()].map((c) => Object.values(c).reduce((a, n) => a + n, 0))
    )
    const y0 = top + k * (H + 50) + H
    parts.push(
      `<text x="${left}" y="${y0 - H - 8}" font-size="14" font-weight="bold">${esc(p.title)}</text>`
    )
    parts.push(`<line x1="${left}" y1="${y0}" x2="${W - right}" y2="${y0}" stroke="#999"/>`)
    for (const [b, c] of bins) {
      const bx = x(b * binMs)
      const bw = Math.max(1, x((b + 1) * binMs) - bx - 0.5)
      let y = y0
      for (const [key, color] of [
        [p.prev, '#9aa5b1'],
        [p.next, '#2f9e44'],
        ['failed', '#e03131']
      ]) {
        const n = c[key] ?? 0
        if (!n) continue
        const h = key === 'failed' ? Math.max(4, (n / max) * H) : (n / max) * H
        y -= h
        parts.push(
          `<rect x="${bx.toFixed(1)}" y="${y.toFixed(1)}" width="${bw.toFixed(1)}" height="${h.toFixed(1)}" fill="${color}"/>`
        )
      }
    }
    p.marks.forEach(([label, ms], m) => {
      const mx = x(ms)
      parts.push(
        `<line x1="${mx.toFixed(1)}" y1="${y0 - H}" x2="${mx.toFixed(1)}" y2="${y0}" stroke="#333" stroke-dasharray="3,3"/>`
      )
      parts.push(
        `<text x="${(mx + 3).toFixed(1)}" y="${y0 - H + 12 + m * 13}" font-size="11">${esc(label)}</text>`
      )
    })
    for (let s = 0; s * 1000 <= spanMs; s += spanMs > 15000 ? 5 : 1)
      parts.push(
        `<text x="${x(s * 1000).toFixed(1)}" y="${y0 + 14}" font-size="10" text-anchor="middle">${s}s</text>`
      )
  })
  const height = top + panels.length * (H + 50) + 10
  const legend = [
    ['old version', '#9aa5b1'],
    ['new version', '#2f9e44'],
    ['failed request', '#e03131']
  ]
    .map(
      ([l, c], i) =>
        `<rect x="${left + 340 + i * 130}" y="8" width="12" height="12" fill="${c}"/><text x="${left + 356 + i * 130}" y="18" font-size="12">${l}</text>`
    )
    .join('')
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${height}" font-family="sans-serif" viewBox="0 0 ${W} ${height}">
<rect width="100%" height="100%" fill="white"/>
<text x="${left}" y="18" font-size="12">responses per 100 ms, from the start of the run</text>${legend}
${parts.join('\n')}
</svg>
`
}
