/**
 * A progress bar on stderr: redrawn in place on a terminal, one line per 10 %
 * otherwise (CI logs stay short).
 *
 * @example
 * ```ts
 * const bar = progress('products', 1_000_000)
 * bar.tick(5000)
 * bar.done()
 * ```
 */
export function progress(label: string, total: number) {
  const tty = process.stderr.isTTY === true
  const started = Date.now()
  let done = 0
  let lastDecile = -1
  const render = (final = false) => {
    const fraction = total === 0 ? 1 : done / total
    const rate = done / Math.max(0.001, (Date.now() - started) / 1000)
    const text = `${label} ${done.toLocaleString('en')}/${total.toLocaleString('en')} (${Math.floor(fraction * 100)}%, ${Math.round(rate).toLocaleString('en')}/s)`
    if (tty) {
      const width = 30
      const filled = Math.round(fraction * width)
      process.stderr.write(`\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${text}${final ? '\n' : ''}`)
    } else {
      const decile = Math.floor(fraction * 10)
      if (decile !== lastDecile) {
        lastDecile = decile
        process.stderr.write(`${text}\n`)
      }
    }
  }
  return {
    tick(n = 1) {
      done += n
      render()
    },
    done() {
      done = total
      render(true)
    },
  }
}
