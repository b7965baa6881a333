-- Rate-limit counters whose window has ended are deleted by the worker's maintenance; the row
-- keeps where its window ends, since windows differ in length (a minute, an hour).
-- Rows from before this column: an hour, the longest window in use.
ALTER TABLE rate_limits ADD COLUMN window_end BIGINT NOT NULL DEFAULT 0;
UPDATE rate_limits SET window_end = window_start + 3600;
CREATE INDEX rate_limits_window_end ON rate_limits (window_end);
