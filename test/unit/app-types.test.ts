import type { z } from '@hono/zod-openapi'
import type { hc, InferResponseType } from 'hono/client'
import { describe, expectTypeOf, it } from 'vitest'
import type { AppType } from '../../src/app.ts'
import type { Product, ProductPage } from '../../src/features/catalog/schemas.ts'
import type { Order } from '../../src/features/orders/schemas.ts'

/*
 * The hottest routes answer with Responses made by hand (cached bytes,
 * `jsonAnswer`), typed as what their route declares (their handlers'
 * `satisfies` holds them to it). A typed client (`hc<AppType>`) must see
 * those types: tsc checks this file in `./run check`, so a hot route whose
 * response type is lost (cast away, or served outside `openapi()`) fails it.
 */

type Client = ReturnType<typeof hc<AppType>>
type Products = Client['v1']['products']

describe('AppType', () => {
  it('keeps the response types of the hot routes', () => {
    expectTypeOf<InferResponseType<Products[':id']['$get'], 200>>().toEqualTypeOf<z.output<typeof Product>>()
    expectTypeOf<InferResponseType<Products['$get'], 200>>().toEqualTypeOf<z.output<typeof ProductPage>>()
    expectTypeOf<InferResponseType<Client['v1']['orders']['$post'], 201>>().toEqualTypeOf<z.output<typeof Order>>()
    expectTypeOf<InferResponseType<Client['v1']['orders'][':id']['pay']['$post'], 202>>().toEqualTypeOf<z.output<typeof Order>>()
  })
})
