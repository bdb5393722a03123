/*
 * The jobs feature's public surface: QStash deliveries, schedule ticks and
 * the admin views of jobs and emails (the outbox itself is src/infra/jobs/).
 */
export { type JobRouteServices, jobRoutes } from './routes.ts'
