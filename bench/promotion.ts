/**
 * How many bytes Node's scavenges promote per promise, by the kind of
 * promise: a native one, and a subclass shaped like postgres.js's `Query`
 * (its constructor keeps the resolve function on the instance) whose @@species
 * is a class static getter (what postgres.js 3.4.9 ships), the same getter made
 * with `Object.defineProperty`, or a data property (what
 * patches/postgres@3.4.9.patch makes it). No database and no network: each
 * promise is resolved from `setImmediate`, and the next one is made in the
 * previous one's `then`, one at a time.
 *
 * The effect is sensitive to how the class is written: with the same fields
 * declared as class fields, with the closures made outside the constructor, or
 * with the classes made by one function, no case promotes.
 * postgres.js itself against PostgreSQL is measured in docs/bench/HISTORY.md.
 *
 *   ./run node bench/promotion.ts      # every case, ~4 s each
 *
 * Each case runs in a child `node --max-semi-space-size=8 --trace-gc-nvp`;
 * the figure is the sum of `promoted=` over its scavenges divided by the
 * promises made. Promoted bytes of objects that are garbage by then are
 * freed only by a mark-compact (docs/bench/HISTORY.md, "Where a target was
 * missed, and what it costs").
 */
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const SECONDS = 3
const PADDING = 20 // small objects each promise holds, so that keeping one shows

type Make = () => PromiseLike<unknown>
function padding() {
  return Array.from({ length: PADDING }, (_, i) => ({ i }))
}

// Shaped like postgres.js's Query: the constructor makes the closure that resolves
// and keeps it on the instance. Written out twice on purpose: made by one function,
// as a subclass of Plain, or with the closures made outside the constructor, no case
// promotes.
class StaticGetter extends Promise<unknown> {
  declare resolve: (v: unknown) => void
  declare pad: unknown
  constructor() {
    let settle: (v: unknown) => void = () => {}
    super((r) => {
      settle = r
    })
    this.resolve = (v) => settle(v)
    this.pad = padding()
    setImmediate(() => this.resolve(1))
  }
  static override get [Symbol.species]() {
    return Promise
  }
}
/** The same without the getter; each child process defines its @@species for its one case. */
class Plain extends Promise<unknown> {
  declare resolve: (v: unknown) => void
  declare pad: unknown
  constructor() {
    let settle: (v: unknown) => void = () => {}
    super((r) => {
      settle = r
    })
    this.resolve = (v) => settle(v)
    this.pad = padding()
    setImmediate(() => this.resolve(1))
  }
}
const plain = (species: PropertyDescriptor): Make => {
  Object.defineProperty(Plain, Symbol.species, species)
  return () => new Plain()
}

/** Each case, set up in the child process that runs it. */
const cases: Record<string, () => Make> = {
  'native Promise': () => () =>
    new Promise((r) => {
      const pad = padding()
      setImmediate(() => r(pad))
    }),
  'subclass, static get [Symbol.species]': () => () => new StaticGetter(),
  'subclass, species getter by defineProperty': () => plain({ get: () => Promise }),
  'subclass, species data property': () => plain({ value: Promise }),
}

async function child(name: string) {
  const setUp = cases[name]
  if (!setUp) throw new Error(`no case ${name}`)
  const make = setUp()
  let made = 0
  let stop = false
  setTimeout(() => {
    stop = true
  }, SECONDS * 1000)
  await new Promise<void>((done) => {
    const step = () => {
      if (stop) return done()
      made++
      make().then(step)
    }
    step()
  })
  process.stderr.write(`made=${made}\n`)
}

async function parent() {
  const self = fileURLToPath(import.meta.url)
  console.log(`node ${process.version}: bytes promoted by scavenges per promise made, ${SECONDS} s per case`)
  for (const name of Object.keys(cases)) {
    const run = spawnSync(process.execPath, ['--max-semi-space-size=8', '--trace-gc-nvp', self, '--case', name], {
      encoding: 'utf8',
      maxBuffer: 256 * 1024 * 1024,
    })
    if (run.status !== 0) throw new Error(`${name}: ${run.stderr}`)
    const made = Number(/made=(\d+)/.exec(run.stderr)?.[1])
    let promoted = 0
    let scavenges = 0
    for (const line of run.stdout.split('\n')) {
      if (!line.includes('gc=s ')) continue
      scavenges++
      promoted += Number(/ promoted=(\d+)/.exec(line)?.[1] ?? 0)
    }
    console.log(
      `${name.padEnd(44)} ${String(Math.round(promoted / made)).padStart(5)} B/promise  (${made} promises, ${scavenges} scavenges)`,
    )
  }
}

const at = process.argv.indexOf('--case')
await (at > 0 ? child(process.argv[at + 1] as string) : parent())
