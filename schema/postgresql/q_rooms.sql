-- The statement table of the PostgreSQL engine: the room rules (store/rooms.c), which
-- the request API and mqchat-admin share. The SQLite engine has one statement of each
-- name in schema/sqlite/q_rooms.sql. Writers run side by side here (READ COMMITTED), so
-- every rule starts with rooms_serialize and then (but create) rooms_lock: a second change
-- waits until the first transaction ends, then reads what it left (the participant count,
-- the owner).

-- @rooms_serialize
-- The acl_version row, which every change of participants, rooms and users bumps anyway
-- (the schema's triggers take it before the room's row): taken first, so rule after rule
-- in one transaction, also in two rooms, takes the locks in the triggers' order (meta,
-- then rooms) and two such transactions wait instead of deadlocking.
SELECT value FROM meta WHERE key = 'acl_version' FOR UPDATE
-- @rooms_lock
-- The room the rule is about: kind, owner, enabled, last message. FOR UPDATE: the
-- message writer (which never takes acl_version) waits for this transaction as well, so
-- a new participant's read marker is the room's last message at the moment it joins.
SELECT kind, created_by, enabled, last_msg_id FROM rooms WHERE id = $1 FOR UPDATE
-- @rooms_user
-- A user that joins: 1 row if it exists, disabled 0/1.
SELECT disabled FROM users WHERE id = $1
-- @rooms_is_participant
SELECT 1 FROM room_participants WHERE room_id = $1 AND user_id = $2
-- @rooms_count
SELECT count(*) FROM room_participants WHERE room_id = $1
-- @rooms_insert
-- $6 the direct key (NULL for a group): the pair's room already there makes this a no-op
-- (a create racing it waits for it to commit, then does nothing).
INSERT INTO rooms(id, kind, name, created_by, created_at, direct_key)
    VALUES ($1, $2, $3::text, $4, $5::bigint, $6::text) ON CONFLICT (direct_key) DO NOTHING
-- @rooms_direct_get
SELECT id, created_by, enabled FROM rooms WHERE direct_key = $1
-- @rooms_part_insert
INSERT INTO room_participants(room_id, user_id, joined_at) VALUES ($1, $2, $3::bigint)
-- @rooms_part_delete
DELETE FROM room_participants WHERE room_id = $1 AND user_id = $2
-- @rooms_next_owner
-- The longest-standing participant; ties: the smallest user id, bytewise as in SQLite
-- (COLLATE "C", whatever the database's collation).
SELECT user_id FROM room_participants WHERE room_id = $1
 ORDER BY joined_at, user_id COLLATE "C" LIMIT 1
-- @rooms_set_owner
UPDATE rooms SET created_by = $2 WHERE id = $1
-- @rooms_set_enabled
UPDATE rooms SET enabled = $2::integer WHERE id = $1
