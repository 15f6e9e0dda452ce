-- The statement table of the SQLite engine, part 1: what store/ itself runs (sessions,
-- versions, migrations, transactions). Each statement starts at "-- @name" (db.h); the
-- PostgreSQL engine has one of each name in schema/postgresql/q_store.sql.

-- @begin
BEGIN
-- @begin_write
-- A transaction that will write: take the write lock now, not at the first write (a
-- deferred transaction that reads first can fail with SQLITE_BUSY when it upgrades).
BEGIN IMMEDIATE
-- @commit
COMMIT
-- @rollback
ROLLBACK
-- @ping
SELECT 1

-- @session_read_only
PRAGMA query_only = ON
-- @session_wal
PRAGMA journal_mode = WAL
-- @session_sync
PRAGMA synchronous = NORMAL
-- @session_foreign_keys
PRAGMA foreign_keys = ON
-- @session_no_autocheckpoint
-- The bridge's writer: its own thread checkpoints (bridge/ingest.c).
PRAGMA wal_autocheckpoint = 0
-- @session_autocheckpoint
-- The bridge's writer when no checkpointer thread could start.
PRAGMA wal_autocheckpoint = 16384
-- @session_journal_limit
PRAGMA journal_size_limit = 268435456

-- @version_table
SELECT 1
-- @version_get
PRAGMA user_version
-- @version_set
-- PRAGMA takes no parameters: db_sqlite.c writes "PRAGMA user_version=N" itself.
-- @migration_begin
BEGIN IMMEDIATE
-- @migration_lock
-- @migration_init

-- @listen_acl
-- SQLite has no notifications: the plugin polls acl_version.

-- Shared by the programs (one statement, several callers).
-- @acl_version
-- What the plugin's snapshot is of; bumped by the schema's triggers at every change to
-- users, rooms, participants and tokens, whoever makes it.
SELECT value FROM meta WHERE key = 'acl_version'
-- @marker_raise
-- A read marker only moves forward: ?1 user, ?2 room, ?3 message id.
INSERT INTO read_markers(user_id, room_id, last_read_id) VALUES (?1, ?2, ?3)
    ON CONFLICT(user_id, room_id) DO UPDATE SET last_read_id = max(last_read_id, excluded.last_read_id)
