CREATE TABLE "order_events" (
	"id" bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY (sequence name "order_events_id_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
	"order_id" uuid NOT NULL,
	"user_id" uuid NOT NULL,
	"status" text NOT NULL,
	"previous_status" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "order_events" ADD CONSTRAINT "order_events_order_id_orders_id_fk" FOREIGN KEY ("order_id") REFERENCES "public"."orders"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "order_events_order_idx" ON "order_events" USING btree ("order_id","id");--> statement-breakpoint
-- Written by hand below this line (drizzle-kit does not model triggers): every change of an order's status is
-- recorded, and announced with NOTIFY, in the transaction that made it, whichever statement made it.
CREATE FUNCTION "order_events_record"() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
	event_id bigint;
BEGIN
	INSERT INTO "order_events" ("order_id", "user_id", "status", "previous_status", "created_at")
	VALUES (NEW."id", NEW."user_id", NEW."status", OLD."status", NEW."updated_at")
	RETURNING "id" INTO event_id;
	PERFORM pg_notify('order_events', json_build_object('id', event_id, 'orderId', NEW."id")::text);
	RETURN NULL;
END
$$;--> statement-breakpoint
CREATE TRIGGER "order_events_record" AFTER UPDATE OF "status" ON "orders"
	FOR EACH ROW WHEN (OLD."status" IS DISTINCT FROM NEW."status") EXECUTE FUNCTION "order_events_record"();
