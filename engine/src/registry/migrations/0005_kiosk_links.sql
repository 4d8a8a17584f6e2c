-- Kiosk links (S8): a system's read-only page reached without signing in, through a link
-- the installer shares (a screen in a lobby, a link to the owner's family). Only a digest
-- of the link's token is kept; revoking the link ends it.
CREATE TABLE kiosk_links (
    id              INTEGER PRIMARY KEY,
    system_id       INTEGER NOT NULL REFERENCES systems (id),
    name            TEXT NOT NULL,
    prefix          TEXT NOT NULL,
    token_digest    TEXT NOT NULL UNIQUE,
    created_by      INTEGER REFERENCES users (id),
    created_us      INTEGER NOT NULL,
    last_used_us    INTEGER,
    revoked_us      INTEGER
);
CREATE INDEX kiosk_links_system ON kiosk_links (system_id);
