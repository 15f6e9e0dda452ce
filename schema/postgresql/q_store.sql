-- The statement table of the PostgreSQL engine, part 1: what store/ itself runs
-- (sessions, versions, migrations, transactions). Parameters are $1, $2, ...; the SQLite
-- engine has one statement of each name in schema/sqlite/q_store.sql.

-- @begin
BEGIN
-- @begin_write
-- Writers serialise on the rows they change (meta's acl_version, a room's counters):
-- READ COMMITTED with row locks is what the SQLite engine's single writer gives.
BEGIN
-- @commit
COMMIT
-- @rollback
ROLLBACK
-- @ping
SELECT 1

-- @session_read_only
SET default_transaction_read_only = on
-- @session_wal
-- @session_sync
-- @session_foreign_keys
-- @session_no_autocheckpoint
-- @session_autocheckpoint
-- @session_journal_limit

-- @version_table
SELECT count(*) FROM pg_catalog.pg_tables
 WHERE schemaname = current_schema() AND tablename = 'mqchat_schema'
-- @version_get
SELECT coalesce(max(version), 0) FROM mqchat_schema
-- @version_set
UPDATE mqchat_schema SET version = $1::integer
-- @migration_begin
BEGIN
-- @migration_lock
-- Two mqchat-admin init at once: the second waits here, then sees the first's version.
SELECT pg_advisory_xact_lock(7166713)
-- @migration_init
-- Run as a script (two statements): the version table and its one row.
CREATE TABLE IF NOT EXISTS mqchat_schema (version integer NOT NULL);
INSERT INTO mqchat_schema(version) SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM mqchat_schema);

-- @listen_acl
LISTEN mqchat_acl

-- Shared by the programs (one statement, several callers).
-- @acl_version
SELECT value FROM meta WHERE key = 'acl_version'
-- @marker_raise
-- A read marker only moves forward: $1 user, $2 room, $3 message id.
INSERT INTO read_markers(user_id, room_id, last_read_id) VALUES ($1, $2, $3::bigint)
    ON CONFLICT (user_id, room_id) DO UPDATE
    SET last_read_id = GREATEST(read_markers.last_read_id, EXCLUDED.last_read_id)
