-- 001: the first schema. Every table of DESIGN.md "Tables".
-- Applied in one transaction by store/migrate.c; PRAGMA user_version becomes 1.

CREATE TABLE users (
    id            TEXT PRIMARY KEY,            -- the MQTT username, [A-Za-z0-9._-]{1,64}
    display_name  TEXT,
    password_hash TEXT NOT NULL,               -- pbkdf2-sha512$<iterations>$<salt b64>$<dk b64>
    created_at    INTEGER NOT NULL,            -- ms since the Unix epoch
    disabled      INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1))
) WITHOUT ROWID;

CREATE TABLE rooms (
    id          TEXT PRIMARY KEY,              -- server-made, random, topic-safe
    kind        TEXT NOT NULL CHECK (kind IN ('direct', 'group')),
    name        TEXT,
    created_by  TEXT NOT NULL REFERENCES users(id),
    enabled     INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    created_at  INTEGER NOT NULL,
    direct_key  TEXT UNIQUE,                   -- "a:b" with a < b for direct rooms, NULL for groups
    version     INTEGER NOT NULL DEFAULT 1,    -- bumped by the triggers below on every membership/enabled change
    last_msg_id INTEGER NOT NULL DEFAULT 0,    -- id of the newest stored message (0: none)
    msg_count   INTEGER NOT NULL DEFAULT 0,    -- number of stored messages
    CHECK ((kind = 'direct') = (direct_key IS NOT NULL))
);
CREATE INDEX rooms_last_msg ON rooms(last_msg_id);

CREATE TABLE room_participants (
    room_id   TEXT NOT NULL REFERENCES rooms(id),
    user_id   TEXT NOT NULL REFERENCES users(id),
    joined_at INTEGER NOT NULL,
    PRIMARY KEY (room_id, user_id)
) WITHOUT ROWID;
CREATE INDEX room_participants_by_user ON room_participants(user_id, room_id);

-- id is the plugin's stamped id (unique, time-ordered, < 2^53), so it is the rowid.
-- seq numbers a room's messages 1, 2, 3, ... in id order: counts and unread counts are
-- differences of seq values, never scans.
CREATE TABLE messages (
    id            INTEGER PRIMARY KEY,
    room_id       TEXT NOT NULL,
    seq           INTEGER NOT NULL,
    sender        TEXT NOT NULL,
    type          TEXT NOT NULL,
    body          TEXT,
    attachment    TEXT,                        -- JSON object, as sent
    client_msg_id TEXT,
    ts            INTEGER NOT NULL             -- ms since the Unix epoch, stamped by the plugin
);
CREATE INDEX messages_by_room ON messages(room_id, id);
CREATE INDEX messages_by_room_sender ON messages(room_id, sender, id);

-- Per-sender message counts, so "count from one user" is one row read.
CREATE TABLE room_sender_counts (
    room_id TEXT NOT NULL,
    sender  TEXT NOT NULL,
    n       INTEGER NOT NULL,
    PRIMARY KEY (room_id, sender)
) WITHOUT ROWID;

CREATE TABLE contacts (
    owner      TEXT NOT NULL REFERENCES users(id),
    contact    TEXT NOT NULL REFERENCES users(id),
    created_at INTEGER NOT NULL,
    PRIMARY KEY (owner, contact),
    CHECK (owner <> contact)
) WITHOUT ROWID;

CREATE TABLE read_markers (
    user_id      TEXT NOT NULL,
    room_id      TEXT NOT NULL,
    last_read_id INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, room_id)
) WITHOUT ROWID;

-- acl_version changes whenever anything the plugin caches (users, rooms, participants)
-- changes, whoever wrote it (bridge, mqchat-admin, a human with sqlite3). The plugin's
-- reload thread polls it; see docs/architecture.md "Membership".
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO meta(key, value) VALUES ('acl_version', 1);

CREATE TRIGGER room_participants_ai AFTER INSERT ON room_participants BEGIN
    UPDATE rooms SET version = version + 1 WHERE id = NEW.room_id;
    UPDATE meta SET value = value + 1 WHERE key = 'acl_version';
END;
CREATE TRIGGER room_participants_ad AFTER DELETE ON room_participants BEGIN
    UPDATE rooms SET version = version + 1 WHERE id = OLD.room_id;
    UPDATE meta SET value = value + 1 WHERE key = 'acl_version';
END;
CREATE TRIGGER rooms_ai AFTER INSERT ON rooms BEGIN
    UPDATE meta SET value = value + 1 WHERE key = 'acl_version';
END;
CREATE TRIGGER rooms_au_enabled AFTER UPDATE OF enabled ON rooms WHEN OLD.enabled <> NEW.enabled BEGIN
    UPDATE rooms SET version = version + 1 WHERE id = NEW.id;
    UPDATE meta SET value = value + 1 WHERE key = 'acl_version';
END;
CREATE TRIGGER users_ai AFTER INSERT ON users BEGIN
    UPDATE meta SET value = value + 1 WHERE key = 'acl_version';
END;
CREATE TRIGGER users_au AFTER UPDATE OF password_hash, disabled ON users BEGIN
    UPDATE meta SET value = value + 1 WHERE key = 'acl_version';
END;
CREATE TRIGGER users_ad AFTER DELETE ON users BEGIN
    UPDATE meta SET value = value + 1 WHERE key = 'acl_version';
END;
