-- The statement table of the PostgreSQL engine: the plugin's membership snapshot
-- (plugin/cache.c), read by its reload thread. Each statement starts at "-- @name" (db.h);
-- schema/sqlite/q_plugin.sql has one of each name. The reload thread's read of
-- acl_version is the shared acl_version of q_store.sql.

-- @snap_begin
-- The whole snapshot is read in one transaction that sees one state: READ COMMITTED (the
-- default) would take a new snapshot at every statement, and a room added between the
-- read of rooms and that of room_participants would lose its members. READ ONLY: the
-- plugin never writes (the session is read-only as well).
BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY
-- @snap_counts
-- Sizes first, so the tables are allocated once.
SELECT (SELECT value FROM meta WHERE key = 'acl_version'),
       (SELECT count(*) FROM users), (SELECT count(*) FROM rooms),
       (SELECT coalesce(max(id), 0) FROM messages)
-- @snap_users
SELECT id, password_hash, disabled FROM users
-- @snap_rooms
SELECT id, enabled, version FROM rooms
-- @snap_participants
-- Grouped by room: cache.c collects each room's members as they arrive together (any
-- collation keeps equal ids together, which is all it needs).
SELECT room_id, user_id FROM room_participants ORDER BY room_id
-- @snap_tokens
-- Device tokens: by the hash of their secret.
SELECT id, user_id, hash, coalesce(expires_at, 0) FROM tokens
