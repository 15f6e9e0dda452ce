-- 003: device tokens (docs/logging-in.md). A token is a random 256-bit secret, shown once
-- when it is made; only the hex SHA-256 of the secret is stored (a high-entropy secret
-- needs no slow hash). The plugin holds every token's hash in its snapshot and checks a
-- CONNECT password that looks like a token ("mqt_" + 43 base64url characters) against it.
CREATE TABLE tokens (
    id           TEXT PRIMARY KEY,          -- public handle, "tk" + 16 hex digits
    user_id      TEXT NOT NULL REFERENCES users(id),
    name         TEXT NOT NULL,             -- the device, as its owner named it
    hash         TEXT NOT NULL UNIQUE,      -- lowercase hex SHA-256 of the secret
    created_at   INTEGER NOT NULL,          -- ms since the Unix epoch
    expires_at   INTEGER,                   -- ms since the Unix epoch; NULL: never
    last_used_at INTEGER                    -- ms; recorded lazily (at most once a minute per token)
);
CREATE INDEX tokens_by_user ON tokens(user_id);

-- A disabled user gets no tokens (re-enabling it must not bring a device back).
CREATE TRIGGER tokens_bi_disabled BEFORE INSERT ON tokens
    WHEN (SELECT disabled FROM users WHERE id = NEW.user_id) <> 0 BEGIN
    SELECT RAISE(ABORT, 'the user is disabled');
END;
CREATE TRIGGER tokens_ai AFTER INSERT ON tokens BEGIN
    UPDATE meta SET value = value + 1 WHERE key = 'acl_version';
END;
CREATE TRIGGER tokens_ad AFTER DELETE ON tokens BEGIN
    UPDATE meta SET value = value + 1 WHERE key = 'acl_version';
END;
CREATE TRIGGER tokens_au AFTER UPDATE OF user_id, hash, expires_at ON tokens BEGIN
    UPDATE meta SET value = value + 1 WHERE key = 'acl_version';
END;

-- Disabling a user or changing its password revokes all of its tokens, whoever makes the
-- change (the bridge, mqchat-admin, sqlite3): a password change is what a user does when
-- a device is lost, and it must not leave that device logged in (docs/logging-in.md).
CREATE TRIGGER users_revoke_tokens AFTER UPDATE OF password_hash, disabled ON users
    WHEN NEW.disabled <> 0 OR NEW.password_hash IS NOT OLD.password_hash BEGIN
    DELETE FROM tokens WHERE user_id = NEW.id;
END;
CREATE TRIGGER users_ad_tokens BEFORE DELETE ON users BEGIN
    DELETE FROM tokens WHERE user_id = OLD.id;
END;
