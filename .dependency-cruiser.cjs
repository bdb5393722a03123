// The architecture of src/, written down and checked by `./run check`
// (`depcruise src`). Layers point inward:
//
//   src/runtime/*   entry files, the only code that knows Workers, Bun or Node
//        |
//   src/app.ts, src/services.ts    the app (routes + middleware) and the one place services are built
//   src/graphql/    the GraphQL read API the app mounts: resolvers over the features' public surfaces
//        |
//   src/features/*  accounts, catalog, orders, jobs, schedule, system: each used by others only through its index.ts
//        |
//   src/http, src/infra, src/db, src/observability   HTTP plumbing, outside systems, the database
//        |
//   src/core, src/lib   shared domain types (principal, roles, error codes, cursors, pages) and plain helpers
//
// Type-only imports count: a cycle through types is still a cycle for a reader.

/** Packages that exist on one runtime only, or that only one runtime's entry loads (as resolved: node_modules/<name>/...). */
const RUNTIME_SPECIFIC_PACKAGES = [
  '^node_modules/(@types/)?bun/',
  '^node_modules/@cloudflare/',
  '^node_modules/@hono/node-server/',
  '^node_modules/hono/dist/(cjs/|types/)?adapter/(bun|cloudflare-workers)/',
  '^node_modules/@electric-sql/pglite/',
  '^node_modules/drizzle-orm/pglite/',
  // The OpenTelemetry SDK and @hono/otel: loaded by src/runtime/tracing.ts when spans are exported; the app speaks @opentelemetry/api only.
  '^node_modules/@hono/otel/',
  '^node_modules/@opentelemetry/(?!api/)',
  // Its Workers counterpart, loaded by src/runtime/worker-tracing.ts.
  '^node_modules/@pydantic/otel-cf-workers/',
]

/** The layers below the features; none of them may know a feature. */
const BELOW_FEATURES = '^src/(http|infra|db|core|lib|observability)/'

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      comment: 'No module reaches itself again through its imports: each layer can be read without the ones above it.',
      severity: 'error',
      from: {},
      to: { circular: true },
    },
    {
      name: 'core-is-innermost',
      comment:
        'src/core holds the domain types every layer shares (principal and roles, error codes and AppError, cursors and ' +
        'pages, the request scope). It depends on src/lib, the database types of src/db (the request scope holds the ' +
        "request's database) and packages only, so that http, infra and features can all use it.",
      severity: 'error',
      from: { path: '^src/core/' },
      to: { path: '^src/', pathNot: '^src/(core|lib|db)/' },
    },
    {
      name: 'lib-is-plain',
      comment: 'src/lib holds small helpers (text bytes and SHA-256, UUIDv7, canonical JSON) that know nothing of the application.',
      severity: 'error',
      from: { path: '^src/lib/' },
      to: { path: '^src/', pathNot: '^src/lib/' },
    },
    {
      name: 'lower-layers-know-no-feature',
      comment:
        'http, infra, db, core, lib and observability serve the features and never import one: a feature is wired to ' +
        'them from above (src/services.ts, src/app.ts), not reached from below.',
      severity: 'error',
      from: { path: BELOW_FEATURES },
      to: { path: '^src/features/' },
    },
    {
      name: 'lower-layers-know-no-wiring',
      comment:
        'Nothing below the app imports the wiring (src/app.ts, src/services.ts, src/runtime/; src/platform.ts before it) or the ' +
        'GraphQL API the app mounts (src/graphql/): services arrive as arguments or on the Hono context, never by reaching up for the factory.',
      severity: 'error',
      from: { path: `${BELOW_FEATURES}|^src/features/|^src/config\\.ts$` },
      to: { path: '^src/(app\\.ts|services\\.ts|platform\\.ts|runtime/|graphql/)' },
    },
    {
      name: 'the-app-uses-features-through-their-index',
      comment:
        'The app, the services factory and the runtime entries see a feature only through its public surface, ' +
        'src/features/<name>/index.ts.',
      severity: 'error',
      from: { path: '^src/', pathNot: '^src/features/' },
      to: { path: '^src/features/[^/]+/', pathNot: '^src/features/[^/]+/index\\.ts$' },
    },
    {
      name: 'features-meet-through-their-index',
      comment:
        "A feature uses another only through that feature's public surface, src/features/<name>/index.ts; its other " +
        'files are its own.',
      severity: 'error',
      from: { path: '^src/features/([^/]+)/' },
      to: { path: '^src/features/[^/]+/', pathNot: ['^src/features/$1/', '^src/features/[^/]+/index\\.ts$'] },
    },
    // The cross-feature uses there are, each with its reason; any other is an error (add it here with its reason).
    {
      name: 'catalog-is-used-by-orders-and-schedule',
      comment:
        'orders drops the catalog cache entries of the products an order changed (PRODUCTS, productKey); the schedule ' +
        'does the same for the products of expired orders.',
      severity: 'error',
      from: { path: '^src/features/', pathNot: '^src/features/(catalog|orders|schedule)/' },
      to: { path: '^src/features/catalog/' },
    },
    {
      name: 'orders-and-accounts-are-used-by-the-schedule',
      comment: 'The schedule runs their periodic work: expiring unpaid orders, purging expired refresh tokens.',
      severity: 'error',
      from: { path: '^src/features/', pathNot: '^src/features/(orders|accounts|schedule)/' },
      to: { path: '^src/features/(orders|accounts)/' },
    },
    {
      name: 'schedule-is-used-by-jobs',
      comment: 'QStash delivers the schedules to the jobs routes, which run them (runSchedule).',
      severity: 'error',
      from: { path: '^src/features/', pathNot: '^src/features/(schedule|jobs)/' },
      to: { path: '^src/features/schedule/' },
    },
    {
      name: 'jobs-and-system-are-used-by-no-feature',
      comment: 'Routes only: the app mounts them.',
      severity: 'error',
      from: { path: '^src/features/([^/]+)/' },
      to: { path: '^src/features/(jobs|system)/', pathNot: '^src/features/$1/' },
    },
    {
      name: 'runtime-specific-only-in-runtime',
      comment:
        'Only src/runtime/ loads what exists on one runtime (Bun, Node, workerd) or is only wanted there (PGlite): ' +
        'the rest of src/ runs unchanged on all three.',
      severity: 'error',
      from: { path: '^src/', pathNot: '^src/runtime/' },
      to: { path: RUNTIME_SPECIFIC_PACKAGES },
    },
    {
      name: 'node-builtins-only-in-runtime',
      comment:
        'Outside src/runtime/ the node: builtins are node:crypto and node:buffer, which Bun, Node and Workers ' +
        '(nodejs_compat) all provide natively (docs/DECISIONS.md, "SHA-256 through node:crypto" and "Base64 is ' +
        'Buffer\'s"); node:fs, node:http and the rest are the runtime\'s.',
      severity: 'error',
      from: { path: '^src/', pathNot: '^src/runtime/' },
      to: { dependencyTypes: ['core'], pathNot: '^(node:)?(crypto|buffer)$' },
    },
    {
      name: 'no-unresolvable',
      comment: 'Every import resolves to a file or a package.',
      severity: 'error',
      from: {},
      to: { couldNotResolve: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^(dist|\\.tools)/' },
    // TypeScript 7 has no compiler API for the tool to use: swc parses the sources, and its syntax tree keeps the
    // imports that disappear when compiled (import type), which count (see the top of this file).
    parser: 'swc',
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default', 'types'],
      extensions: ['.ts', '.js', '.mjs', '.cjs', '.d.ts'],
    },
    reporterOptions: { text: { highlightFocused: true } },
  },
}
