-- Activation: how many microinverters the installer expects the gateway to find
-- ("operation verified" waits for them). NULL: whatever the gateway reports.
ALTER TABLE systems ADD COLUMN expected_microinverters INTEGER
    CHECK (expected_microinverters IS NULL OR expected_microinverters BETWEEN 1 AND 10000);

-- The grid profile each gateway applied (a name from engine/src/grid_profiles.rs); set
-- when a grid-profile task succeeds. NULL: not known.
ALTER TABLE devices ADD COLUMN grid_profile TEXT;

-- Third-party reporting (F5): a company lets a third party (a utility, an incentive
-- programme) fetch its systems' monthly production through a feed link. Only a digest of
-- the link's token is kept.
CREATE TABLE report_feeds (
    id              INTEGER PRIMARY KEY,
    company_id      INTEGER NOT NULL REFERENCES companies (id),
    name            TEXT NOT NULL,
    prefix          TEXT NOT NULL,
    token_digest    TEXT NOT NULL UNIQUE,
    created_by      INTEGER REFERENCES users (id),
    created_us      INTEGER NOT NULL,
    last_used_us    INTEGER,
    revoked_us      INTEGER
);
CREATE INDEX report_feeds_company ON report_feeds (company_id);

-- Subcontractor companies an installer works with (C5): it grants them systems. A grant's
-- `revoked_us` ends access at that time; set in the future, it is an expiry.
CREATE TABLE authorized_subcontractors (
    installer_id    INTEGER NOT NULL REFERENCES companies (id),
    company_id      INTEGER NOT NULL REFERENCES companies (id),
    added_by        INTEGER REFERENCES users (id),
    added_us        INTEGER NOT NULL,
    PRIMARY KEY (installer_id, company_id)
);
INSERT OR IGNORE INTO authorized_subcontractors (installer_id, company_id, added_us)
    SELECT s.installer_id, g.company_id, min(g.granted_us)
      FROM subcontractor_grants g JOIN systems s ON s.id = g.system_id
     GROUP BY s.installer_id, g.company_id;

-- Invitations: a new user sets their password through a one-time link. Only a digest of
-- the link's token is kept.
CREATE TABLE password_tokens (
    token_digest    TEXT PRIMARY KEY,
    user_id         INTEGER NOT NULL REFERENCES users (id),
    created_us      INTEGER NOT NULL,
    expires_us      INTEGER NOT NULL
);
CREATE INDEX password_tokens_user ON password_tokens (user_id);

-- Keys for scripts (the JSON API and POST /api/sql). Like sessions, only a BLAKE2b-256
-- digest of the key is kept; `prefix` is its first characters, shown so people can tell
-- their keys apart.
CREATE TABLE api_keys (
    id              INTEGER PRIMARY KEY,
    user_id         INTEGER NOT NULL REFERENCES users (id),
    name            TEXT NOT NULL,
    prefix          TEXT NOT NULL,
    key_digest      TEXT NOT NULL UNIQUE,
    created_us      INTEGER NOT NULL,
    last_used_us    INTEGER,
    revoked_us      INTEGER
);
CREATE INDEX api_keys_user ON api_keys (user_id);

-- The platform administrator (the operator of this Sunfleet installation) belongs to no
-- company. SQLite cannot alter a CHECK constraint, so the table is rebuilt (the migration
-- runs with foreign keys off and checks them before it commits).
CREATE TABLE users_new (
    id            INTEGER PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE COLLATE NOCASE,
    given_name    TEXT NOT NULL,
    family_name   TEXT NOT NULL,
    phone         TEXT NOT NULL DEFAULT '',
    language      TEXT NOT NULL DEFAULT 'en',
    role          TEXT NOT NULL CHECK (role IN
                    ('installer_admin', 'installer_user', 'subcontractor', 'owner', 'analyst',
                     'platform_admin')),
    company_id    INTEGER REFERENCES companies (id),
    owner_id      INTEGER REFERENCES owners (id),
    password_hash TEXT,
    active        INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
    created_us    INTEGER NOT NULL,
    last_login_us INTEGER,
    CHECK ((role = 'owner') = (owner_id IS NOT NULL)),
    CHECK (role IN ('owner', 'platform_admin') OR company_id IS NOT NULL),
    CHECK (role <> 'platform_admin' OR company_id IS NULL)
);
INSERT INTO users_new
    (id, email, given_name, family_name, phone, language, role, company_id, owner_id,
     password_hash, active, created_us, last_login_us)
    SELECT id, email, given_name, family_name, phone, language, role, company_id, owner_id,
           password_hash, active, created_us, last_login_us
      FROM users;
DROP TABLE users;
ALTER TABLE users_new RENAME TO users;
