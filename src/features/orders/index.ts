/*
 * The orders feature's public surface: what the rest of src/ may use.
 * Checkout and the order state machine; the jobs that capture payments and
 * send the paid email; the expiry the schedule runs; the streams of order
 * status changes; the reads (a page of orders, the orders of a batch of
 * products) that the GraphQL API answers from.
 */
export { type OrderEventRouteServices, orderEventRoutes } from './event-routes.ts'
export { type OrderJobServices, orderJobHandlers } from './jobs.ts'
export { type OrderRouteServices, orderRoutes } from './routes.ts'
export { MAX_ORDER_LINES } from './schemas.ts'
export { expireOrders, listOrders, type OrderJson, ordersOfProducts } from './service.ts'
