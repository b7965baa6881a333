-- Delivery worker support. Kept in step with ../postgres/0002_outbox_delivery.sql.
--
-- An admin retries a parked message by its id alone (`rekey outbox retry ID`,
-- `POST /rekey/v1/outbox/{id}/retry`). Not UNIQUE: ids are unique by construction (time-ordered
-- random), and a global uniqueness rule could not be enforced once the table is sharded by tenant.
CREATE INDEX outbox_id ON outbox (id);

-- The worker's claim scans only due pending messages, most overdue first; sent and failed rows,
-- which pile up, stay out of this index.
CREATE INDEX outbox_pending_due ON outbox (next_attempt_at) WHERE state = 'pending';
DROP INDEX outbox_due;
