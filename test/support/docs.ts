import { readdirSync } from 'node:fs'
import { join } from 'node:path'

/** The repository's root. */
export const REPO_ROOT = join(import.meta.dirname, '../..')

const markdownIn = (dir: string): string[] =>
  readdirSync(join(REPO_ROOT, dir), { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? markdownIn(join(dir, e.name)) : e.name.endsWith('.md') ? [join(dir, e.name)] : [],
  )

/**
 * The documentation a newcomer reads: README.md and every Markdown file under
 * docs/, its folders included, as paths from the repository's root.
 *
 * @example
 * ```ts
 * for (const file of docFiles()) readFileSync(join(REPO_ROOT, file), 'utf8')
 * ```
 */
export const docFiles = (): string[] => ['README.md', ...markdownIn('docs')]
