-- The statement table of the SQLite engine: the plugin's membership snapshot
-- (plugin/cache.c), read by its reload thread. Each statement starts at "-- @name" (db.h);
-- schema/postgresql/q_plugin.sql has one of each name. The reload thread's poll of
-- acl_version is the shared acl_version of q_store.sql.

-- @snap_begin
-- The whole snapshot is read in one transaction: one consistent state. A deferred BEGIN
-- takes its read snapshot at the first SELECT and never waits for the writer (WAL).
BEGIN
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
-- Grouped by room: cache.c collects each room's members as they arrive together.
SELECT room_id, user_id FROM room_participants ORDER BY room_id
-- @snap_tokens
-- Device tokens (schema 003): by the hash of their secret.
SELECT id, user_id, hash, coalesce(expires_at, 0) FROM tokens
