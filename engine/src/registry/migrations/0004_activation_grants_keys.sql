-- Activation: how many microinverters the installer expects the gateway to find
-- ("operation verified" waits for them). NULL: whatever the gateway reports.
ALTER TABLE systems ADD COLUMN expected_microinverters INTEGER
    CHECK (expected_microinverters IS NULL OR expected_microinverters BETWEEN 1 AND 10000);

-- A subcontractor's access may end on its own (NULL: until revoked).
ALTER TABLE subcontractor_grants ADD COLUMN expires_us INTEGER;

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
    CHECK (role IN ('owner', 'platform_admin') OR company_id IS NOT NULL)
);
INSERT INTO users_new
    (id, email, given_name, family_name, phone, language, role, company_id, owner_id,
     password_hash, active, created_us, last_login_us)
    SELECT id, email, given_name, family_name, phone, language, role, company_id, owner_id,
           password_hash, active, created_us, last_login_us
      FROM users;
DROP TABLE users;
ALTER TABLE users_new RENAME TO users;
