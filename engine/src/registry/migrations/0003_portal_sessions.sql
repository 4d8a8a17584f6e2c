-- Portal sign-in sessions. The cookie carries a random token; only its BLAKE2b-256 digest
-- is kept here, so a copy of the database signs nobody in. Ending a user's sessions (sign
-- out everywhere, deactivation) deletes their rows.
CREATE TABLE portal_sessions (
    token_digest    TEXT PRIMARY KEY,
    user_id         INTEGER NOT NULL REFERENCES users (id),
    -- Sent back with every state-changing form or request (CSRF).
    csrf_token      TEXT NOT NULL,
    created_us      INTEGER NOT NULL,
    expires_us      INTEGER NOT NULL
);
CREATE INDEX portal_sessions_user ON portal_sessions (user_id);

-- Per-user portal preferences (the systems list's columns, …) as JSON text.
CREATE TABLE user_settings (
    user_id         INTEGER NOT NULL REFERENCES users (id),
    name            TEXT NOT NULL,
    value           TEXT NOT NULL,
    PRIMARY KEY (user_id, name)
);
