-- The statement table of the SQLite engine: the bridge's writer (bridge/ingest.c), which
-- commits the plugin's stamped messages in batches. The PostgreSQL engine has one statement
-- of each name in schema/postgresql/q_ingest.sql.
--
-- The statements that take a JSON array as their one parameter (ingest_rooms_get,
-- ingest_stored_ids, ingest_msgs_insert, ingest_rooms_update, ingest_sender_counts) are one
-- round trip for many rows on PostgreSQL. On SQLite ingest.c runs the one-row statements
-- where there are both (ingest_msg_insert, ingest_room_update, ingest_sender_count: a
-- statement is a function call here, and writing and parsing the JSON cost more than it
-- saved, see store_one); the many-row ones are kept working, equal to the one-row ones.

-- @ingest_cache_size
-- The writer's page cache: 64 MB keeps the indexes' hot pages (rooms, recent leaves) in
-- memory (SQLite's default is 2 MB).
PRAGMA cache_size = -65536
-- @ingest_mmap_size
-- Reads through mmap copy nothing.
PRAGMA mmap_size = 1073741824

-- @ingest_watermark_get
-- The watermark saved with the last commit (NULL, NULL for a new database).
SELECT (SELECT value FROM meta WHERE key = 'feed_epoch'), (SELECT value FROM meta WHERE key = 'feed_seq')
-- @ingest_watermark_set
-- ?1 epoch, ?2 seq of the batch's last message.
INSERT INTO meta(key, value) VALUES ('feed_epoch', ?1), ('feed_seq', ?2)
    ON CONFLICT(key) DO UPDATE SET value = excluded.value

-- @ingest_rooms_get
-- The rooms of a batch: ?1 a JSON array of room ids. A room that does not exist has no row.
SELECT id, msg_count, last_msg_id FROM rooms WHERE id IN (SELECT value FROM json_each(?1))
-- @ingest_stored_ids
-- Which of the ids in ?1 (a JSON array of message ids) are stored already, in id order.
SELECT m.id FROM json_each(?1) AS j JOIN messages AS m ON m.id = j.value ORDER BY m.id

-- @ingest_msgs_insert
-- The batch's new messages, in one statement: ?1 a JSON array of rows
-- [id, room, seq, sender, type, body, attachment, client_msg_id, ts] (body, attachment and
-- client_msg_id may be null). A row whose id is stored already is left out (ingest.c
-- compares the rows inserted with the rows given).
INSERT OR IGNORE INTO messages(id, room_id, seq, sender, type, body, attachment, client_msg_id, ts)
    SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, value ->> 6,
           value ->> 7, value ->> 8
    FROM json_each(?1)
-- @ingest_msg_insert
-- One message (an older one, or every message of a batch retried carefully). Idempotent by id.
INSERT OR IGNORE INTO messages(id, room_id, seq, sender, type, body, attachment, client_msg_id, ts)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
-- @ingest_seq_before
-- The seq of the room's last message before id ?2: a message older than the room's newest
-- takes the seq after it.
SELECT seq FROM messages WHERE room_id = ?1 AND id < ?2 ORDER BY id DESC LIMIT 1
-- @ingest_seq_shift
-- ... and the room's later messages move up by one.
UPDATE messages SET seq = seq + 1 WHERE room_id = ?1 AND id > ?2

-- @ingest_room_update
-- ?1 room, ?2 messages inserted for it, ?3 the newest id among them.
UPDATE rooms SET msg_count = msg_count + ?2, last_msg_id = max(last_msg_id, ?3) WHERE id = ?1
-- @ingest_sender_count
-- ?1 room, ?2 sender, ?3 messages inserted from that sender.
INSERT INTO room_sender_counts(room_id, sender, n) VALUES (?1, ?2, ?3)
    ON CONFLICT(room_id, sender) DO UPDATE SET n = n + excluded.n
-- @ingest_rooms_update
-- ingest_room_update for many rooms: ?1 a JSON array of rows [room, n, last], each room once.
UPDATE rooms SET msg_count = msg_count + x.n, last_msg_id = max(last_msg_id, x.last)
    FROM (SELECT value ->> 0 AS id, value ->> 1 AS n, value ->> 2 AS last FROM json_each(?1)) AS x
    WHERE rooms.id = x.id
-- @ingest_sender_counts
-- ingest_sender_count for many: ?1 a JSON array of rows [room, sender, n], each pair once.
INSERT INTO room_sender_counts(room_id, sender, n)
    SELECT value ->> 0, value ->> 1, value ->> 2 FROM json_each(?1) WHERE true
    ON CONFLICT(room_id, sender) DO UPDATE SET n = n + excluded.n

-- @ingest_msg_savepoint
-- Around each message of a batch retried carefully, so that a message the database refuses
-- is skipped and the transaction goes on. SQLite needs none: a failed statement leaves
-- the transaction as it was.
-- @ingest_msg_savepoint_undo
-- @ingest_msg_savepoint_release
