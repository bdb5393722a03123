# syntax=docker/dockerfile:1.7
#
# edgeshop on Node: production dependencies only, a non-root user, a health
# check. The service runs as one bundled file (dist/runtime/node.mjs, made by
# `bun build` in the first stage): it starts with less than half the memory
# of Node stripping types from ~100 modules (docs/DECISIONS.md). The sources
# stay in the image for the one-shot scripts (migrate, seed).
#
#   docker build -t edgeshop .
#   docker run -p 3000:3000 -e JWT_SECRET=... -e DATABASE_URL=postgres://... edgeshop
#   docker run ... edgeshop node scripts/migrate.ts      # apply migrations first
#
# Without DATABASE_URL set DATA_DIR (for example -e DATA_DIR=/data with a
# volume on /data) to choose the embedded database explicitly; production
# refuses to fall back to it silently.

ARG BUN_VERSION=1.4.5
ARG NODE_VERSION=24

# Stage 1: production dependencies, resolved from the committed bun.lock, and the bundle.
FROM oven/bun:${BUN_VERSION}-slim AS deps
WORKDIR /app
COPY package.json bun.lock ./
COPY patches ./patches
RUN bun install --frozen-lockfile --production --ignore-scripts
COPY src ./src
RUN bun build src/runtime/node.ts --target=node --format=esm --sourcemap=linked --external @electric-sql/pglite --outdir dist/runtime --entry-naming '[name].mjs'

# Stage 2: the runtime.
FROM node:${NODE_VERSION}-slim AS runtime
# MALLOC_ARENA_MAX: argon2id hashes in libuv's threads, and glibc's per-thread
# arenas kept ~150 MB of it resident after a burst of logins; two arenas halve that.
# MALLOC_MMAP_THRESHOLD_: a fixed threshold, so each hash's 19 MiB is mapped and
# handed back when it is done. glibc otherwise raises the threshold after the
# first hash and keeps up to two hashes' memory (~40 MB) resident for good; the
# price is ~18 ms more per hash (35 -> 51 ms here, docs/DECISIONS.md).
# --max-semi-space-size=8: V8 sized the young generation from the machine's
# memory and kept ~90 MB more resident under checkout load, for no throughput.
# --max-old-space-size=256: the heap's live set under load is ~25 MB, but with
# the machine-sized limit V8 let garbage grow the heap to ~100 MB before
# collecting; 256 MB keeps ~10x the live set (docs/DECISIONS.md). Raise it with
# the container's memory if the L1 cache is made much larger:
# -e NODE_OPTIONS="--max-semi-space-size=8 --max-old-space-size=1024".
ENV NODE_ENV=production \
    PORT=3000 \
    MALLOC_ARENA_MAX=2 \
    MALLOC_MMAP_THRESHOLD_=131072 \
    NODE_OPTIONS="--max-semi-space-size=8 --max-old-space-size=256"
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY --from=deps /app/dist ./dist
COPY package.json ./
COPY drizzle ./drizzle
COPY scripts ./scripts
COPY src ./src
RUN mkdir -p /data && chown node:node /data
USER node
EXPOSE 3000
VOLUME ["/data"]
# Liveness, not readiness: a database outage should not get the container
# killed; /readyz is for load balancers.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||3000)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
STOPSIGNAL SIGTERM
# No --enable-source-maps: Node parses the bundle's map at start and keeps it,
# ~25 MB resident for stack traces only 500s log. The bundle is not minified,
# so its traces name our functions; dist/runtime/node.mjs.map maps them back,
# or -e NODE_OPTIONS="... --enable-source-maps" turns it on.
CMD ["node", "dist/runtime/node.mjs"]
