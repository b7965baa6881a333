-- Event webhooks (SPEC §10, §12). Kept in step with ../sqlite/0006_outbox_webhooks.sql.
--
-- The outbox carries the signed events for the configured webhook URLs: channel 'webhook'
-- (the recipient is the receiver's URL) and kind 'event' (the sealed body is the event's JSON).
-- The CHECK constraints of 0001 were unnamed, so they carry PostgreSQL's generated names
-- (table_column_check); they are replaced under the same names.
ALTER TABLE outbox DROP CONSTRAINT outbox_channel_check;
ALTER TABLE outbox ADD CONSTRAINT outbox_channel_check
    CHECK (channel IN ('email', 'sms', 'webhook'));
ALTER TABLE outbox DROP CONSTRAINT outbox_kind_check;
ALTER TABLE outbox ADD CONSTRAINT outbox_kind_check
    CHECK (kind IN ('password_reset', 'password_init', 'password_changed', 'event'));
