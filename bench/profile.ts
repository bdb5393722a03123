/**
 * Where a Node CPU profile's busy time went, by package: the self time of
 * every sample grouped by the module it ran in (a package under
 * node_modules, a file of src/, a `node:` module, or V8's own entries such
 * as the garbage collector), idle time left out. For the bundle that
 * production runs (`./run build:node`), whose `// <path>` comments say
 * which module each line came from.
 *
 *   ./run node --cpu-prof --cpu-prof-dir=prof dist/runtime/node.mjs   # under load, then SIGINT
 *   ./run node bench/profile.ts prof/<file>.cpuprofile [dist/runtime/node.mjs]
 */
import { readFileSync } from 'node:fs'

interface CallFrame {
  functionName: string
  url: string
  lineNumber: number
}
interface Profile {
  nodes: { id: number; callFrame: CallFrame }[]
  samples: number[]
  timeDeltas: number[]
}

const [file, bundle = 'dist/runtime/node.mjs'] = process.argv.slice(2)
if (!file) throw new Error('usage: ./run node bench/profile.ts <file.cpuprofile> [bundle]')
const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile
// The line at which each bundled module starts, from the bundler's `// path` comments.
const starts: [number, string][] = []
readFileSync(bundle, 'utf8')
  .split('\n')
  .forEach((line, i) => {
    if (line.startsWith('// ') && /\.(m?js|ts)$/.test(line)) starts.push([i, line.slice(3)])
  })
const moduleAt = (line: number): string => {
  let lo = 0
  let hi = starts.length - 1
  let found = '?'
  while (lo <= hi) {
    const mid = (lo + hi) >> 1
    if (starts[mid]![0] <= line) {
      found = starts[mid]![1]
      lo = mid + 1
    } else hi = mid - 1
  }
  return found
}
const bundleName = bundle.split('/').pop()!
const groupOf = (f: CallFrame): string => {
  if (f.url.endsWith(bundleName)) {
    const path = moduleAt(f.lineNumber)
    return /node_modules\/((@[^/]+\/)?[^/]+)/.exec(path)?.[1] ?? path
  }
  if (f.url.startsWith('node:')) return `node:${f.url.slice(5).split('/').pop()}`
  return f.functionName.startsWith('(') ? f.functionName : `native ${f.functionName}`
}

// Grouped once per profile node, not once per sample.
const groups = new Map(profile.nodes.map((n) => [n.id, groupOf(n.callFrame)]))
const time = new Map<string, number>()
let busy = 0
profile.samples.forEach((id, i) => {
  const group = groups.get(id)!
  if (group === '(idle)') return
  const dt = profile.timeDeltas[i] ?? 0
  busy += dt
  time.set(group, (time.get(group) ?? 0) + dt)
})
console.log(`busy ${(busy / 1000).toFixed(0)} ms`)
for (const [group, t] of [...time].sort((a, b) => b[1] - a[1]).slice(0, 25))
  console.log(`${((100 * t) / busy).toFixed(1).padStart(5)} %  ${group}`)
