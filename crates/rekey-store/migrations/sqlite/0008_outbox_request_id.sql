-- The id of the request that queued a message (`x-request-id`), so the delivery worker's log
-- lines for it carry the same id as the request's. An opaque tag, never a secret. NULL: queued
-- outside a request (the CLI) or before this column.
ALTER TABLE outbox ADD COLUMN request_id TEXT;
