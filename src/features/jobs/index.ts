/*
 * The jobs feature's public surface: QStash deliveries, schedule ticks and
 * the admin views of jobs and emails (the outbox itself is src/infra/jobs/);
 * the page of jobs that the GraphQL API answers from.
 */
export { type JobRouteServices, jobRoutes } from './routes.ts'
export { type JobJson, type JobStatus, listJobs } from './service.ts'
