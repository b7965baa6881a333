-- ListUsers filters, counts and pages in SQL (SPEC §11).
--
-- username_lower: the username lower-cased by the store in Rust (str::to_lowercase), as
-- email_lower is, for the case-insensitive username queries; SQLite's LOWER() folds only ASCII,
-- so SQL cannot fold the same way on both databases. Rows from before this column are folded
-- here with LOWER(): the same for ASCII; a non-ASCII capital in such an older username may
-- stay as it is (always on SQLite) and then be found only by a case-sensitive query.
ALTER TABLE users ADD COLUMN username_lower TEXT NOT NULL DEFAULT '';
UPDATE users SET username_lower = LOWER(username);

-- A tenant's users in listing order, so a page is read off the index instead of sorting
-- every user of the tenant. id in code-point order (COLLATE "C"), the order the listing asks
-- for whatever the database's default collation is.
CREATE INDEX users_listing ON users (tenant_id, creation_date, id COLLATE "C");
