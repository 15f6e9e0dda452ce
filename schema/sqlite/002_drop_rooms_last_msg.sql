-- 002: drop rooms_last_msg. No query uses it (rooms.list picks a user's rooms through
-- room_participants_by_user and sorts them by an expression of last_msg_id and created_at),
-- and every committed batch moved one entry in it per room it touched.
DROP INDEX IF EXISTS rooms_last_msg;
