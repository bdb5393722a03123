/*
 * The catalog feature's public surface: what the rest of src/ may use.
 * Products behind the two-tier cache; PRODUCTS and productKey name the cache
 * entries other features drop when they change a product's stock; the reads
 * (a page, one product, a batch by id) that the GraphQL API answers from.
 */
export { type CatalogRouteServices, catalogRoutes, productReadLane } from './routes.ts'
export { ListQuery, type ListQueryInput } from './schemas.ts'
export { type CatalogService, PRODUCTS, type ProductJson, productAnswer, productKey, productsByIds, productsPage } from './service.ts'
