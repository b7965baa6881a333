-- A user change on SQLite is sent as one call: BEGIN IMMEDIATE, its statements, COMMIT
-- (src/sql/change.rs). What must hold before it commits (the user's state allowed the change,
-- the rate limit was not exceeded, the code was still pending) is checked by inserting a row
-- that violates this table's CHECK when the condition fails, which stops the call before its
-- COMMIT; the store then rolls back. The constraint is named so that the error names it (SQLite
-- reports a CHECK failure by the constraint's name). No row is ever stored here.
CREATE TABLE change_guard (
    must_hold INTEGER NOT NULL CONSTRAINT change_guard CHECK (must_hold = 1)
);
