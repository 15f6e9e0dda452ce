-- The statement table of the SQLite engine: the room rules (store/rooms.c), which the
-- request API and mqchat-admin share. The PostgreSQL engine has one statement of each
-- name in schema/postgresql/q_rooms.sql. Every caller holds a write transaction
-- (BEGIN IMMEDIATE): nobody else writes until it ends.

-- @rooms_serialize
-- Nothing to do: BEGIN IMMEDIATE already made this the only writer (PostgreSQL locks
-- acl_version here).
-- @rooms_lock
-- The room the rule is about: kind, owner, enabled, last message.
SELECT kind, created_by, enabled, last_msg_id FROM rooms WHERE id = ?1
-- @rooms_user
-- A user that joins: 1 row if it exists, disabled 0/1.
SELECT disabled FROM users WHERE id = ?1
-- @rooms_is_participant
SELECT 1 FROM room_participants WHERE room_id = ?1 AND user_id = ?2
-- @rooms_count
SELECT count(*) FROM room_participants WHERE room_id = ?1
-- @rooms_insert
-- ?6 the direct key (NULL for a group): the pair's room already there makes this a no-op.
INSERT INTO rooms(id, kind, name, created_by, created_at, direct_key)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(direct_key) DO NOTHING
-- @rooms_direct_get
SELECT id, created_by, enabled FROM rooms WHERE direct_key = ?1
-- @rooms_part_insert
INSERT INTO room_participants(room_id, user_id, joined_at) VALUES (?1, ?2, ?3)
-- @rooms_part_delete
DELETE FROM room_participants WHERE room_id = ?1 AND user_id = ?2
-- @rooms_next_owner
-- The longest-standing participant; ties: the smallest user id (bytewise).
SELECT user_id FROM room_participants WHERE room_id = ?1 ORDER BY joined_at, user_id LIMIT 1
-- @rooms_set_owner
UPDATE rooms SET created_by = ?2 WHERE id = ?1
-- @rooms_set_enabled
UPDATE rooms SET enabled = ?2 WHERE id = ?1
