-- The statement table of the SQLite engine: the bridge's request API (bridge/requests.c,
-- req_rooms.c, req_messages.c, req_people.c). Each statement starts at "-- @name" (db.h);
-- schema/postgresql/q_bridge.sql has one of each name. Transactions, acl_version and the
-- read marker of `read` are the shared statements of q_store.sql; the changes to rooms
-- and their participants are the room rules' (store/rooms.c, q_rooms.sql).
--
-- Activity of a room, for ordering rooms.list: its newest message id, else the first
-- message id of the millisecond it was created (same scale, see MQC_ID_SEQ_BITS):
--   (CASE WHEN r.last_msg_id > 0 THEN r.last_msg_id ELSE (r.created_at - 1704067200000) * 4096 END)
-- The columns of a room object as seen by user ?1 (room_from_row), in req_room_one and
-- req_rooms_page: id, name, kind, created_by, enabled, created_at, participants (a JSON
-- array), the last message (7 columns, msg_from_row), unread. Unread: the room's message
-- count minus the seq of the newest message at or below my read marker.

-- @req_user_get
SELECT disabled FROM users WHERE id = ?1
-- @req_room_access
SELECT r.kind, r.created_by, r.enabled FROM rooms r
 JOIN room_participants p ON p.room_id = r.id AND p.user_id = ?2 WHERE r.id = ?1
-- @req_room_state
SELECT version, enabled FROM rooms WHERE id = ?1
-- @req_members
SELECT user_id, room_id FROM room_participants WHERE room_id = ?1 ORDER BY user_id
-- @req_direct_get
SELECT id, direct_key FROM rooms WHERE direct_key = ?1
-- @req_room_one
-- Room ?2 as user ?1 sees it.
SELECT r.id, r.name, r.kind, r.created_by, r.enabled, r.created_at,
 (SELECT json_group_array(p2.user_id) FROM room_participants p2 WHERE p2.room_id = r.id),
 m.id, m.sender, m.ts, m.type, m.body, m.attachment, m.client_msg_id,
 max(0, r.msg_count - coalesce((SELECT s.seq FROM messages s WHERE s.room_id = r.id
   AND s.id <= rm.last_read_id ORDER BY s.id DESC LIMIT 1), 0))
 FROM rooms r
 LEFT JOIN messages m ON m.id = r.last_msg_id
 LEFT JOIN read_markers rm ON rm.user_id = ?1 AND rm.room_id = r.id
 WHERE r.id = ?2
-- @req_rooms_page
-- The page is chosen from my participations alone (room_participants_by_user, top-N
-- sort of my rooms' activity), then only its rows get participants, last message and
-- unread. Cursor: (?2 activity, ?3 room id), exclusive; ?4 rows at most. Column 15 is
-- the row's activity.
WITH page(id, activity) AS MATERIALIZED (
 SELECT r.id, (CASE WHEN r.last_msg_id > 0 THEN r.last_msg_id ELSE (r.created_at - 1704067200000) * 4096 END)
 FROM room_participants p JOIN rooms r ON r.id = p.room_id
 WHERE p.user_id = ?1
 AND ((CASE WHEN r.last_msg_id > 0 THEN r.last_msg_id ELSE (r.created_at - 1704067200000) * 4096 END) < ?2
  OR ((CASE WHEN r.last_msg_id > 0 THEN r.last_msg_id ELSE (r.created_at - 1704067200000) * 4096 END) = ?2
   AND r.id < ?3))
 ORDER BY 2 DESC, 1 DESC LIMIT ?4)
 SELECT r.id, r.name, r.kind, r.created_by, r.enabled, r.created_at,
 (SELECT json_group_array(p2.user_id) FROM room_participants p2 WHERE p2.room_id = r.id),
 m.id, m.sender, m.ts, m.type, m.body, m.attachment, m.client_msg_id,
 max(0, r.msg_count - coalesce((SELECT s.seq FROM messages s WHERE s.room_id = r.id
   AND s.id <= rm.last_read_id ORDER BY s.id DESC LIMIT 1), 0)),
 page.activity
 FROM page JOIN rooms r ON r.id = page.id
 LEFT JOIN messages m ON m.id = r.last_msg_id
 LEFT JOIN read_markers rm ON rm.user_id = ?1 AND rm.room_id = r.id
 ORDER BY page.activity DESC, page.id DESC
-- @req_contacts_list
-- Everyone ?1 named or shares a room with: id, display name, whether named (0/1), the
-- direct room of the pair (its key as mqc_direct_key makes it).
WITH c(u) AS (
 SELECT contact FROM contacts WHERE owner = ?1
 UNION SELECT p2.user_id FROM room_participants p1
 JOIN room_participants p2 ON p2.room_id = p1.room_id
 WHERE p1.user_id = ?1 AND p2.user_id <> ?1)
 SELECT c.u, u.display_name,
 EXISTS (SELECT 1 FROM contacts k WHERE k.owner = ?1 AND k.contact = c.u),
 (SELECT d.id FROM rooms d WHERE d.direct_key =
   CASE WHEN ?1 < c.u THEN ?1 || ':' || c.u ELSE c.u || ':' || ?1 END)
 FROM c JOIN users u ON u.id = c.u ORDER BY c.u
-- @req_contact_add
INSERT INTO contacts(owner, contact, created_at) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING
-- @req_contact_del
DELETE FROM contacts WHERE owner = ?1 AND contact = ?2

-- History: room ?1, ids in (?2, ?3), at most ?4 rows, ?5 the sender (the _from_ ones).
-- @req_hist_desc
SELECT id, sender, ts, type, body, attachment, client_msg_id FROM messages
 WHERE room_id = ?1 AND id > ?2 AND id < ?3
 ORDER BY id DESC LIMIT ?4
-- @req_hist_asc
SELECT id, sender, ts, type, body, attachment, client_msg_id FROM messages
 WHERE room_id = ?1 AND id > ?2 AND id < ?3
 ORDER BY id ASC LIMIT ?4
-- @req_hist_from_desc
SELECT id, sender, ts, type, body, attachment, client_msg_id FROM messages
 WHERE room_id = ?1 AND sender = ?5
 AND id > ?2 AND id < ?3 ORDER BY id DESC LIMIT ?4
-- @req_hist_from_asc
SELECT id, sender, ts, type, body, attachment, client_msg_id FROM messages
 WHERE room_id = ?1 AND sender = ?5
 AND id > ?2 AND id < ?3 ORDER BY id ASC LIMIT ?4
-- @req_count_from
SELECT n FROM room_sender_counts WHERE room_id = ?1 AND sender = ?2
-- @req_unread
-- Room ?1's message count and user ?2's unread count.
SELECT r.msg_count, max(0, r.msg_count - coalesce((SELECT s.seq FROM messages s
 WHERE s.room_id = r.id AND s.id <= rm.last_read_id ORDER BY s.id DESC LIMIT 1), 0))
 FROM rooms r LEFT JOIN read_markers rm ON rm.user_id = ?2 AND rm.room_id = r.id WHERE r.id = ?1
-- @req_msg_in_room
SELECT 1 FROM messages WHERE id = ?1 AND room_id = ?2
-- @req_marker_get
SELECT last_read_id FROM read_markers WHERE user_id = ?1 AND room_id = ?2

-- @req_token_insert
INSERT INTO tokens(id, user_id, name, hash, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
-- @req_token_count
SELECT count(*) FROM tokens WHERE user_id = ?1
-- @req_tokens_list
SELECT id, name, created_at, expires_at, last_used_at FROM tokens WHERE user_id = ?1
 ORDER BY created_at, id
-- @req_token_delete
DELETE FROM tokens WHERE id = ?1 AND user_id = ?2
-- @req_token_used
-- The plugin's report: token ?1 of user ?2 was used at ?3 (ms); never moves back.
UPDATE tokens SET last_used_at = max(coalesce(last_used_at, 0), ?3) WHERE id = ?1 AND user_id = ?2
