-- The statement table of the PostgreSQL engine: the bridge's writer (bridge/ingest.c),
-- which commits the plugin's stamped messages in batches. Parameters are $1, $2, ...; the
-- SQLite engine has one statement of each name in schema/sqlite/q_ingest.sql.
--
-- Every statement is a round trip to the server, so the common case of a batch costs a
-- fixed number of them, not a few per message: the batch's rooms are read with one
-- statement, its new messages inserted with one per chunk, and the rooms' and senders'
-- counts written with one each, each taking a JSON array as its one parameter (ingest.c
-- writes the arrays). The read markers are marker_raise (q_store.sql), one per (sender,
-- room).

-- @ingest_cache_size
-- @ingest_mmap_size

-- @ingest_watermark_get
SELECT (SELECT value FROM meta WHERE key = 'feed_epoch'), (SELECT value FROM meta WHERE key = 'feed_seq')
-- @ingest_watermark_set
INSERT INTO meta(key, value) VALUES ('feed_epoch', $1::bigint), ('feed_seq', $2::bigint)
    ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value

-- @ingest_rooms_get
-- No FOR UPDATE: msg_count and last_msg_id change only in this writer's transactions (one
-- bridge per database), and a row lock here, before any other, deadlocked with a
-- transaction locking messages and then rooms (the test harness's LOCK TABLE).
SELECT id, msg_count, last_msg_id FROM rooms WHERE id IN (SELECT json_array_elements_text($1::json))
-- @ingest_stored_ids
SELECT m.id FROM json_array_elements_text($1::json) AS j(v) JOIN messages AS m ON m.id = j.v::bigint
 ORDER BY m.id

-- @ingest_msgs_insert
-- $1: a JSON array of rows [id, room, seq, sender, type, body, attachment, client_msg_id, ts].
INSERT INTO messages(id, room_id, seq, sender, type, body, attachment, client_msg_id, ts)
    SELECT (e ->> 0)::bigint, e ->> 1, (e ->> 2)::bigint, e ->> 3, e ->> 4, e ->> 5, e ->> 6, e ->> 7,
           (e ->> 8)::bigint
    FROM json_array_elements($1::json) AS e
    ON CONFLICT (id) DO NOTHING
-- @ingest_msg_insert
INSERT INTO messages(id, room_id, seq, sender, type, body, attachment, client_msg_id, ts)
    VALUES ($1::bigint, $2::text, $3::bigint, $4::text, $5::text, $6::text, $7::text, $8::text, $9::bigint)
    ON CONFLICT (id) DO NOTHING
-- @ingest_seq_before
SELECT seq FROM messages WHERE room_id = $1::text AND id < $2::bigint ORDER BY id DESC LIMIT 1
-- @ingest_seq_shift
UPDATE messages SET seq = seq + 1 WHERE room_id = $1::text AND id > $2::bigint

-- @ingest_room_update
UPDATE rooms SET msg_count = msg_count + $2::bigint, last_msg_id = GREATEST(last_msg_id, $3::bigint)
 WHERE id = $1::text
-- @ingest_sender_count
INSERT INTO room_sender_counts(room_id, sender, n) VALUES ($1::text, $2::text, $3::bigint)
    ON CONFLICT (room_id, sender) DO UPDATE SET n = room_sender_counts.n + EXCLUDED.n
-- @ingest_rooms_update
-- $1: a JSON array of rows [room, n, last], each room once.
UPDATE rooms SET msg_count = rooms.msg_count + x.n, last_msg_id = GREATEST(rooms.last_msg_id, x.last)
    FROM (SELECT e ->> 0 AS id, (e ->> 1)::bigint AS n, (e ->> 2)::bigint AS last
            FROM json_array_elements($1::json) AS e) AS x
    WHERE rooms.id = x.id
-- @ingest_sender_counts
-- $1: a JSON array of rows [room, sender, n], each pair once (ON CONFLICT DO UPDATE cannot
-- change a row twice in one statement).
INSERT INTO room_sender_counts(room_id, sender, n)
    SELECT e ->> 0, e ->> 1, (e ->> 2)::bigint FROM json_array_elements($1::json) AS e
    ON CONFLICT (room_id, sender) DO UPDATE SET n = room_sender_counts.n + EXCLUDED.n

-- @ingest_msg_savepoint
-- An error aborts a PostgreSQL transaction: a message refused (a constraint) is undone to
-- its savepoint, and the batch goes on without it.
SAVEPOINT ingest_msg
-- @ingest_msg_savepoint_undo
ROLLBACK TO SAVEPOINT ingest_msg
-- @ingest_msg_savepoint_release
RELEASE SAVEPOINT ingest_msg
