-- The statement table of the PostgreSQL engine: mqchat-admin (admin/main.c), besides the
-- room rules it shares with the request API (q_rooms.sql). The SQLite engine has one
-- statement of each name in schema/sqlite/q_admin.sql. Listings order ids with
-- COLLATE "C", bytewise as SQLite does, whatever the database's collation.

-- @admin_user_exists
SELECT 1 FROM users WHERE id = $1
-- @admin_user_insert
-- $2 the display name or NULL, $3 the password hash ('' for a user without a password).
-- A user added meanwhile by someone else makes this a no-op (changes 0), not an error
-- (which would abort the transaction).
INSERT INTO users(id, display_name, password_hash, created_at) VALUES ($1, $2::text, $3, $4::bigint)
    ON CONFLICT (id) DO NOTHING
-- @admin_user_passwd
-- Revokes the user's tokens (trigger users_revoke_tokens).
UPDATE users SET password_hash = $2 WHERE id = $1
-- @admin_user_set_disabled
UPDATE users SET disabled = $2::integer WHERE id = $1
-- @admin_user_list
SELECT id, disabled, display_name FROM users ORDER BY id COLLATE "C"
-- @admin_room_list
-- One room a line: its participants in user id order, comma-separated.
SELECT r.id, r.kind, r.enabled, r.created_by,
       (SELECT string_agg(p.user_id, ',' ORDER BY p.user_id COLLATE "C")
          FROM room_participants p WHERE p.room_id = r.id),
       r.name
  FROM rooms r ORDER BY r.created_at, r.id COLLATE "C"
-- @admin_token_insert
-- $6 expires_at or NULL. A disabled user gets none (trigger tokens_bi_disabled).
INSERT INTO tokens(id, user_id, name, hash, created_at, expires_at)
    VALUES ($1, $2, $3, $4, $5::bigint, $6::bigint)
-- @admin_token_list
SELECT id, name, created_at, expires_at, last_used_at FROM tokens WHERE user_id = $1
 ORDER BY created_at, id COLLATE "C"
-- @admin_token_revoke
DELETE FROM tokens WHERE id = $1 AND user_id = $2
