/*
 * The catalog feature's public surface: what the rest of src/ may use.
 * Products behind the two-tier cache; PRODUCTS and productKey name the cache
 * entries other features drop when they change a product's stock.
 */
export { type CatalogRouteServices, catalogRoutes, productReadLane } from './routes.ts'
export { type CatalogService, PRODUCTS, productKey } from './service.ts'
