-- `ORDER BY x DESC` means DESC NULLS FIRST; an index built DESC NULLS LAST cannot give that order, so lists sorted
-- in memory or walked the primary key. A customer's orders are now read by creation time, an order the primary
-- key cannot give (see docs/BENCHMARKS.md, the orders scale case).
DROP INDEX "orders_user_id_idx";--> statement-breakpoint
DROP INDEX "jobs_status_id_idx";--> statement-breakpoint
DROP INDEX "products_active_id_idx";--> statement-breakpoint
DROP INDEX "products_active_category_id_idx";--> statement-breakpoint
CREATE INDEX "orders_user_created_idx" ON "orders" USING btree ("user_id","created_at" DESC NULLS FIRST,"id" DESC NULLS FIRST);--> statement-breakpoint
CREATE INDEX "jobs_status_id_idx" ON "jobs" USING btree ("status","id" DESC NULLS FIRST);--> statement-breakpoint
CREATE INDEX "products_active_id_idx" ON "products" USING btree ("id" DESC NULLS FIRST) WHERE "products"."active";--> statement-breakpoint
CREATE INDEX "products_active_category_id_idx" ON "products" USING btree ("category","id" DESC NULLS FIRST) WHERE "products"."active";