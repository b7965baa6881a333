-- Token expiry and last use; erasure of a deleted user's messages. Kept in step with
-- ../sqlite/0007_token_expiry_and_erasure.sql.
--
-- expires_at: from then on the token authenticates as unknown, like a revoked one (NULL:
-- never). last_used_at: the last request it authenticated, written at most once a minute.
-- Both microseconds since the Unix epoch, from the caller's clock.
ALTER TABLE api_tokens ADD COLUMN expires_at BIGINT;
ALTER TABLE api_tokens ADD COLUMN last_used_at BIGINT;

-- A deleted user's email and SMS messages are erased in the deletion's transaction; this finds
-- them without reading the tenant's whole outbox (and serves the users foreign key).
CREATE INDEX outbox_user ON outbox (tenant_id, user_id);
