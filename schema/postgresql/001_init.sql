-- 001: the first PostgreSQL schema: the final state of the SQLite migrations 001-003
-- (every table of DESIGN.md "Tables", device tokens; no rooms_last_msg index).
-- Applied in one transaction by store/db.c, which keeps the version in mqchat_schema.
-- Differences from the SQLite schema, none visible to the C code:
--   * ms timestamps, ids, counters and versions are BIGINT (SQLite INTEGER is 64-bit);
--     the flags disabled/enabled stay INTEGER 0/1 with their CHECK, not boolean.
--   * no WITHOUT ROWID; messages.id is a plain BIGINT PRIMARY KEY (the plugin stamps it).
--   * each trigger is a PL/pgSQL function plus a row-level trigger of the same name;
--     SQLite's IS NOT is IS DISTINCT FROM, RAISE(ABORT) is RAISE EXCEPTION with SQLSTATE
--     23514 (check_violation), so it is classified as a constraint failure.
--   * rooms_au_enabled is a BEFORE UPDATE trigger setting NEW.version instead of an
--     UPDATE of its own row; the acl_version bump stays AFTER UPDATE (rooms_au_enabled_acl).
--   * tokens_bi_disabled reads the user FOR SHARE: SQLite has one writer at a time, here a
--     token insert racing a disable / password change must wait for it (or it for the insert).
--   * new: every acl_version change NOTIFYs channel mqchat_acl with the new value (delivered
--     at commit), so the plugin listens instead of polling.
--   * every text column is COLLATE "C": it compares and sorts bytewise like SQLite's BINARY
--     collation whatever the database's locale (the direct key "a:b" with a < b in strcmp
--     order, page order of ids and names).

CREATE TABLE users (
    id            TEXT COLLATE "C" PRIMARY KEY,            -- the MQTT username, [A-Za-z0-9._-]{1,64}
    display_name  TEXT COLLATE "C",
    password_hash TEXT COLLATE "C" NOT NULL,               -- pbkdf2-sha512$<iterations>$<salt b64>$<dk b64>
    created_at    BIGINT NOT NULL,             -- ms since the Unix epoch
    disabled      INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1))
);

CREATE TABLE rooms (
    id          TEXT COLLATE "C" PRIMARY KEY,              -- server-made, random, topic-safe
    kind        TEXT COLLATE "C" NOT NULL CHECK (kind IN ('direct', 'group')),
    name        TEXT COLLATE "C",
    created_by  TEXT COLLATE "C" NOT NULL REFERENCES users(id),
    enabled     INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    created_at  BIGINT NOT NULL,
    direct_key  TEXT COLLATE "C" UNIQUE,                   -- "a:b" with a < b for direct rooms, NULL for groups
    version     BIGINT NOT NULL DEFAULT 1,     -- bumped by the triggers below on every membership/enabled change
    last_msg_id BIGINT NOT NULL DEFAULT 0,     -- id of the newest stored message (0: none)
    msg_count   BIGINT NOT NULL DEFAULT 0,     -- number of stored messages
    CHECK ((kind = 'direct') = (direct_key IS NOT NULL))
);

CREATE TABLE room_participants (
    room_id   TEXT COLLATE "C" NOT NULL REFERENCES rooms(id),
    user_id   TEXT COLLATE "C" NOT NULL REFERENCES users(id),
    joined_at BIGINT NOT NULL,
    PRIMARY KEY (room_id, user_id)
);
CREATE INDEX room_participants_by_user ON room_participants(user_id, room_id);

-- id is the plugin's stamped id (unique, time-ordered, < 2^53).
-- seq numbers a room's messages 1, 2, 3, ... in id order: counts and unread counts are
-- differences of seq values, never scans.
CREATE TABLE messages (
    id            BIGINT PRIMARY KEY,
    room_id       TEXT COLLATE "C" NOT NULL,
    seq           BIGINT NOT NULL,
    sender        TEXT COLLATE "C" NOT NULL,
    type          TEXT COLLATE "C" NOT NULL,
    body          TEXT COLLATE "C",
    attachment    TEXT COLLATE "C",                        -- JSON object, as sent
    client_msg_id TEXT COLLATE "C",
    ts            BIGINT NOT NULL              -- ms since the Unix epoch, stamped by the plugin
);
CREATE INDEX messages_by_room ON messages(room_id, id);
CREATE INDEX messages_by_room_sender ON messages(room_id, sender, id);

-- Per-sender message counts, so "count from one user" is one row read.
CREATE TABLE room_sender_counts (
    room_id TEXT COLLATE "C" NOT NULL,
    sender  TEXT COLLATE "C" NOT NULL,
    n       BIGINT NOT NULL,
    PRIMARY KEY (room_id, sender)
);

CREATE TABLE contacts (
    owner      TEXT COLLATE "C" NOT NULL REFERENCES users(id),
    contact    TEXT COLLATE "C" NOT NULL REFERENCES users(id),
    created_at BIGINT NOT NULL,
    PRIMARY KEY (owner, contact),
    CHECK (owner <> contact)
);

CREATE TABLE read_markers (
    user_id      TEXT COLLATE "C" NOT NULL,
    room_id      TEXT COLLATE "C" NOT NULL,
    last_read_id BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, room_id)
);

-- acl_version changes whenever anything the plugin caches (users, rooms, participants,
-- tokens) changes, whoever wrote it (bridge, mqchat-admin, a human with psql). The plugin's
-- reload thread listens on mqchat_acl (meta_au_notify); see docs/architecture.md "Membership".
CREATE TABLE meta (
    key   TEXT COLLATE "C" PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO meta(key, value) VALUES ('acl_version', 1);

-- Device tokens (docs/logging-in.md). A token is a random 256-bit secret, shown once
-- when it is made; only the hex SHA-256 of the secret is stored (a high-entropy secret
-- needs no slow hash). The plugin holds every token's hash in its snapshot and checks a
-- CONNECT password that looks like a token ("mqt_" + 43 base64url characters) against it.
CREATE TABLE tokens (
    id           TEXT COLLATE "C" PRIMARY KEY,          -- public handle, "tk" + 16 hex digits
    user_id      TEXT COLLATE "C" NOT NULL REFERENCES users(id),
    name         TEXT COLLATE "C" NOT NULL,             -- the device, as its owner named it
    hash         TEXT COLLATE "C" NOT NULL UNIQUE,      -- lowercase hex SHA-256 of the secret
    created_at   BIGINT NOT NULL,           -- ms since the Unix epoch
    expires_at   BIGINT,                    -- ms since the Unix epoch; NULL: never
    last_used_at BIGINT                     -- ms; recorded lazily (at most once a minute per token)
);
CREATE INDEX tokens_by_user ON tokens(user_id);

-- Trigger functions.

-- users_ai, users_au, users_ad, rooms_ai, rooms_au_enabled_acl, tokens_ai, tokens_ad, tokens_au.
CREATE FUNCTION acl_version_bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE meta SET value = value + 1 WHERE key = 'acl_version';
    RETURN NULL;
END;
$$;

-- room_participants_ai, room_participants_ad. meta before rooms (SQLite's order is the
-- other way, with the same result): a transaction adding members to two rooms then takes
-- the acl_version row lock first and waits there, instead of holding one room's row while
-- another such transaction holds acl_version and waits for that room (a deadlock, 40P01).
CREATE FUNCTION room_participants_bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE meta SET value = value + 1 WHERE key = 'acl_version';
    IF TG_OP = 'DELETE' THEN
        UPDATE rooms SET version = version + 1 WHERE id = OLD.room_id;
    ELSE
        UPDATE rooms SET version = version + 1 WHERE id = NEW.room_id;
    END IF;
    RETURN NULL;
END;
$$;

-- rooms_au_enabled: the row's own version, set before it is written (no second UPDATE of
-- the row). NEW.version + 1, as SQLite's UPDATE after the row's update adds 1 to whatever
-- version the statement wrote.
CREATE FUNCTION rooms_bu_enabled() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.version := NEW.version + 1;
    RETURN NEW;
END;
$$;

-- tokens_bi_disabled: a disabled user gets no tokens (re-enabling it must not bring a
-- device back). FOR SHARE conflicts with the row lock of an UPDATE of users, so a disable
-- or password change in flight is waited for and then seen (and the revoking DELETE of
-- users_revoke_tokens waits for this insert to commit, then sees the token).
CREATE FUNCTION tokens_bi_disabled() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (SELECT disabled FROM users WHERE id = NEW.user_id FOR SHARE) <> 0 THEN
        RAISE EXCEPTION 'the user is disabled' USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END;
$$;

-- users_revoke_tokens.
CREATE FUNCTION users_revoke_tokens() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM tokens WHERE user_id = NEW.id;
    RETURN NULL;
END;
$$;

-- users_ad_tokens (BEFORE DELETE: must return OLD, or the delete is skipped).
CREATE FUNCTION users_ad_tokens() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM tokens WHERE user_id = OLD.id;
    RETURN OLD;
END;
$$;

-- meta_au_notify: NOTIFY mqchat_acl, payload the new acl_version. Delivered at commit
-- (never for a rolled-back change); identical payloads in one transaction are folded.
CREATE FUNCTION meta_au_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('mqchat_acl', NEW.value::text);
    RETURN NULL;
END;
$$;

-- Triggers.

CREATE TRIGGER room_participants_ai AFTER INSERT ON room_participants
    FOR EACH ROW EXECUTE FUNCTION room_participants_bump();
CREATE TRIGGER room_participants_ad AFTER DELETE ON room_participants
    FOR EACH ROW EXECUTE FUNCTION room_participants_bump();
CREATE TRIGGER rooms_ai AFTER INSERT ON rooms
    FOR EACH ROW EXECUTE FUNCTION acl_version_bump();
CREATE TRIGGER rooms_au_enabled BEFORE UPDATE OF enabled ON rooms
    FOR EACH ROW WHEN (OLD.enabled <> NEW.enabled) EXECUTE FUNCTION rooms_bu_enabled();
CREATE TRIGGER rooms_au_enabled_acl AFTER UPDATE OF enabled ON rooms
    FOR EACH ROW WHEN (OLD.enabled <> NEW.enabled) EXECUTE FUNCTION acl_version_bump();
CREATE TRIGGER users_ai AFTER INSERT ON users
    FOR EACH ROW EXECUTE FUNCTION acl_version_bump();
CREATE TRIGGER users_au AFTER UPDATE OF password_hash, disabled ON users
    FOR EACH ROW EXECUTE FUNCTION acl_version_bump();
CREATE TRIGGER users_ad AFTER DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION acl_version_bump();

CREATE TRIGGER tokens_bi_disabled BEFORE INSERT ON tokens
    FOR EACH ROW EXECUTE FUNCTION tokens_bi_disabled();
CREATE TRIGGER tokens_ai AFTER INSERT ON tokens
    FOR EACH ROW EXECUTE FUNCTION acl_version_bump();
CREATE TRIGGER tokens_ad AFTER DELETE ON tokens
    FOR EACH ROW EXECUTE FUNCTION acl_version_bump();
CREATE TRIGGER tokens_au AFTER UPDATE OF user_id, hash, expires_at ON tokens
    FOR EACH ROW EXECUTE FUNCTION acl_version_bump();

-- Disabling a user or changing its password revokes all of its tokens, whoever makes the
-- change (the bridge, mqchat-admin, psql): a password change is what a user does when
-- a device is lost, and it must not leave that device logged in (docs/logging-in.md).
CREATE TRIGGER users_revoke_tokens AFTER UPDATE OF password_hash, disabled ON users
    FOR EACH ROW WHEN (NEW.disabled <> 0 OR NEW.password_hash IS DISTINCT FROM OLD.password_hash)
    EXECUTE FUNCTION users_revoke_tokens();
CREATE TRIGGER users_ad_tokens BEFORE DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION users_ad_tokens();

CREATE TRIGGER meta_au_notify AFTER UPDATE ON meta
    FOR EACH ROW WHEN (NEW.key = 'acl_version' AND NEW.value IS DISTINCT FROM OLD.value)
    EXECUTE FUNCTION meta_au_notify();
