/*
 * The system feature's public surface: /healthz, /readyz, /metrics, and the
 * API reference (/openapi.json, /docs).
 */
export { registerReference } from './reference.ts'
export { type SystemRouteServices, systemRoutes } from './routes.ts'
