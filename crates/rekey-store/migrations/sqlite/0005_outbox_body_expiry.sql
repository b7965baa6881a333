-- A failed message's sealed body is erased once the code it carries has expired (the
-- worker's housekeeping), so parked rows do not keep usable secrets around. NULL: the body
-- holds no code (a "password changed" notice), or it is already erased.
ALTER TABLE outbox ADD COLUMN body_expires_at INTEGER;
-- Rows from before this column: the longest a code can live (7 days) after the message.
UPDATE outbox SET body_expires_at = created_at + 604800000000
    WHERE kind IN ('password_reset', 'password_init') AND state <> 'sent';
