-- The fleet registry, version 1. Times are UTC microseconds since the epoch (INTEGER);
-- dates are ISO text (YYYY-MM-DD). Serials are the 12-digit numbers as INTEGER.

CREATE TABLE companies (
    id            INTEGER PRIMARY KEY,
    name          TEXT NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('installer', 'subcontractor')),
    street        TEXT NOT NULL DEFAULT '',
    city          TEXT NOT NULL DEFAULT '',
    region        TEXT NOT NULL DEFAULT '',
    postal_code   TEXT NOT NULL DEFAULT '',
    country       TEXT NOT NULL DEFAULT '',
    phone         TEXT NOT NULL DEFAULT '',
    email         TEXT NOT NULL DEFAULT '',
    created_us    INTEGER NOT NULL
);

CREATE TABLE owners (
    id            INTEGER PRIMARY KEY,
    given_name    TEXT NOT NULL,
    family_name   TEXT NOT NULL,
    email         TEXT NOT NULL,
    phone         TEXT NOT NULL DEFAULT '',
    language      TEXT NOT NULL DEFAULT 'en',
    created_us    INTEGER NOT NULL
);

CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE COLLATE NOCASE,
    given_name    TEXT NOT NULL,
    family_name   TEXT NOT NULL,
    phone         TEXT NOT NULL DEFAULT '',
    language      TEXT NOT NULL DEFAULT 'en',
    role          TEXT NOT NULL CHECK (role IN
                    ('installer_admin', 'installer_user', 'subcontractor', 'owner', 'analyst')),
    -- Members of a company (installers, subcontractors, analysts) or the owner of systems.
    company_id    INTEGER REFERENCES companies (id),
    owner_id      INTEGER REFERENCES owners (id),
    -- argon2id PHC string; NULL until the user sets a password.
    password_hash TEXT,
    active        INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
    created_us    INTEGER NOT NULL,
    last_login_us INTEGER,
    CHECK ((role = 'owner') = (owner_id IS NOT NULL)),
    CHECK (role = 'owner' OR company_id IS NOT NULL)
);

CREATE TABLE systems (
    id                      INTEGER PRIMARY KEY,
    name                    TEXT NOT NULL,
    kind                    TEXT NOT NULL CHECK (kind IN ('residential', 'commercial')),
    installer_id            INTEGER NOT NULL REFERENCES companies (id),
    owner_id                INTEGER REFERENCES owners (id),
    installer_reference     TEXT NOT NULL DEFAULT '',
    other_references        TEXT NOT NULL DEFAULT '',
    third_party_owned       INTEGER NOT NULL DEFAULT 0 CHECK (third_party_owned IN (0, 1)),
    street_address          TEXT NOT NULL DEFAULT '',
    city                    TEXT NOT NULL DEFAULT '',
    region                  TEXT NOT NULL DEFAULT '',
    postal_code             TEXT NOT NULL DEFAULT '',
    country                 TEXT NOT NULL DEFAULT '',
    latitude                REAL,
    longitude               REAL,
    elevation_m             REAL,
    time_zone               TEXT NOT NULL DEFAULT 'UTC',
    stage                   TEXT NOT NULL DEFAULT 'started'
                              CHECK (stage IN ('started', 'connecting', 'verifying', 'ready')),
    -- The status installers see (DOMAIN.md, "Statuses").
    status                  TEXT NOT NULL DEFAULT 'normal' CHECK (status IN
                              ('normal', 'comm', 'micro', 'power', 'meter', 'meter_issue',
                               'battery', 'storage_idle', 'deactivated', 'retired',
                               'not_monitored')),
    status_since_us         INTEGER,
    internet_connection     TEXT NOT NULL DEFAULT 'ethernet'
                              CHECK (internet_connection IN ('ethernet', 'wifi', 'cellular')),
    attachment_type         TEXT NOT NULL DEFAULT '',
    install_date            TEXT,
    -- Permission to operate: operational as of this date (NULL: not yet).
    operational_date        TEXT,
    weather_enabled         INTEGER NOT NULL DEFAULT 1 CHECK (weather_enabled IN (0, 1)),
    production_source       TEXT NOT NULL DEFAULT 'microinverters'
                              CHECK (production_source IN ('microinverters', 'meter')),
    kiosk_content           TEXT NOT NULL DEFAULT '{}',
    estimate_level          TEXT NOT NULL DEFAULT 'system'
                              CHECK (estimate_level IN ('system', 'array')),
    annual_degradation_pct  REAL NOT NULL DEFAULT 0.5,
    threshold_pct           INTEGER NOT NULL DEFAULT 90
                              CHECK (threshold_pct BETWEEN 50 AND 95 AND threshold_pct % 5 = 0),
    threshold_days          INTEGER NOT NULL DEFAULT 90 CHECK (threshold_days IN (30, 90)),
    created_us              INTEGER NOT NULL
);
CREATE INDEX systems_installer ON systems (installer_id);
CREATE INDEX systems_name ON systems (name COLLATE NOCASE);

-- An installer lets a subcontractor company see and work on one of its systems.
CREATE TABLE subcontractor_grants (
    id              INTEGER PRIMARY KEY,
    system_id       INTEGER NOT NULL REFERENCES systems (id),
    company_id      INTEGER NOT NULL REFERENCES companies (id),
    granted_by      INTEGER REFERENCES users (id),
    granted_us      INTEGER NOT NULL,
    revoked_us      INTEGER,
    UNIQUE (system_id, company_id)
);

CREATE TABLE arrays (
    id              INTEGER PRIMARY KEY,
    system_id       INTEGER NOT NULL REFERENCES systems (id),
    name            TEXT NOT NULL,
    tilt_deg        REAL NOT NULL,
    azimuth_deg     REAL NOT NULL,
    grid_rows       INTEGER NOT NULL CHECK (grid_rows > 0),
    grid_columns    INTEGER NOT NULL CHECK (grid_columns > 0),
    position        INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX arrays_system ON arrays (system_id);

-- Every device: gateways, microinverters, meters, batteries.
CREATE TABLE devices (
    id              INTEGER PRIMARY KEY,
    serial          INTEGER NOT NULL UNIQUE CHECK (serial BETWEEN 0 AND 999999999999),
    kind            TEXT NOT NULL CHECK (kind IN ('gateway', 'microinverter', 'meter', 'battery')),
    system_id       INTEGER NOT NULL REFERENCES systems (id),
    model           TEXT NOT NULL DEFAULT '',
    firmware        TEXT NOT NULL DEFAULT '',
    -- Microinverters: AC phase and place in an array.
    phase           TEXT,
    array_id        INTEGER REFERENCES arrays (id),
    grid_row        INTEGER,
    grid_column     INTEGER,
    module_stc_w    REAL,
    -- Meters: what they measure.
    meter_kind      TEXT CHECK (meter_kind IN ('production', 'consumption_net', 'consumption_total')),
    -- Batteries.
    capacity_wh     REAL,
    -- Gateways.
    cell_modem_sku  TEXT,
    cell_plan_end   TEXT,
    low_bandwidth   INTEGER NOT NULL DEFAULT 0 CHECK (low_bandwidth IN (0, 1)),
    -- Lifecycle.
    state           TEXT NOT NULL DEFAULT 'provisioned'
                      CHECK (state IN ('provisioned', 'active', 'retired')),
    provisioned_us  INTEGER NOT NULL,
    first_report_us INTEGER,
    last_report_us  INTEGER,
    retired_us      INTEGER,
    replaced_by     INTEGER REFERENCES devices (id),
    UNIQUE (array_id, grid_row, grid_column)
);
CREATE INDEX devices_system ON devices (system_id, kind);

-- Monthly production estimates (kWh): array_id 0 for the system-level estimate.
CREATE TABLE production_estimates (
    system_id       INTEGER NOT NULL REFERENCES systems (id),
    array_id        INTEGER NOT NULL DEFAULT 0,
    month           INTEGER NOT NULL CHECK (month BETWEEN 1 AND 12),
    energy_kwh      REAL NOT NULL CHECK (energy_kwh >= 0),
    PRIMARY KEY (system_id, array_id, month)
);

-- Activation checklist: when each step was completed.
CREATE TABLE activation_steps (
    system_id       INTEGER NOT NULL REFERENCES systems (id),
    step            TEXT NOT NULL CHECK (step IN
                      ('owner_entered', 'location_entered', 'gateways_entered',
                       'gateways_reported', 'good_communication', 'operation_verified',
                       'arrays_built', 'system_operational', 'owner_access_granted')),
    completed_us    INTEGER NOT NULL,
    PRIMARY KEY (system_id, step)
);

-- Conditions of systems and devices (DOMAIN.md, "Device conditions"), open until ended.
CREATE TABLE events (
    id              INTEGER PRIMARY KEY,
    system_id       INTEGER NOT NULL REFERENCES systems (id),
    device_id       INTEGER REFERENCES devices (id),
    code            TEXT NOT NULL,
    severity        TEXT NOT NULL CHECK (severity IN ('info', 'low', 'medium', 'high')),
    started_us      INTEGER NOT NULL,
    ended_us        INTEGER,
    details         TEXT NOT NULL DEFAULT ''
);
CREATE INDEX events_open ON events (system_id, ended_us);

CREATE TABLE gateway_tasks (
    id              INTEGER PRIMARY KEY,
    gateway_id      INTEGER NOT NULL REFERENCES devices (id),
    kind            TEXT NOT NULL CHECK (kind IN
                      ('production_on', 'production_off', 'reboot', 'provision_devices',
                       'meter_mode', 'grid_profile', 'check_signal', 'scan_devices',
                       'clear_gfi', 'reset_dc_resistance')),
    parameters      TEXT NOT NULL DEFAULT '{}',
    state           TEXT NOT NULL DEFAULT 'queued'
                      CHECK (state IN ('queued', 'sent', 'succeeded', 'failed', 'cancelled')),
    created_by      INTEGER REFERENCES users (id),
    created_us      INTEGER NOT NULL,
    sent_us         INTEGER,
    finished_us     INTEGER,
    result          TEXT NOT NULL DEFAULT ''
);
CREATE INDEX gateway_tasks_pending ON gateway_tasks (gateway_id, state);

-- What ingest must remember per gateway across restarts.
CREATE TABLE gateway_sessions (
    gateway_id          INTEGER PRIMARY KEY REFERENCES devices (id),
    -- Highest batch sequence number acknowledged as durable.
    acked_seq           INTEGER NOT NULL DEFAULT 0,
    firmware            TEXT NOT NULL DEFAULT '',
    software_version    TEXT NOT NULL DEFAULT '',
    last_connected_us   INTEGER
);

CREATE TABLE service_requests (
    id              INTEGER PRIMARY KEY,
    kind            TEXT NOT NULL CHECK (kind IN
                      ('return', 'replacement', 'permit', 'incentive', 'labor_claim')),
    system_id       INTEGER NOT NULL REFERENCES systems (id),
    device_id       INTEGER REFERENCES devices (id),
    company_id      INTEGER NOT NULL REFERENCES companies (id),
    created_by      INTEGER REFERENCES users (id),
    state           TEXT NOT NULL DEFAULT 'submitted' CHECK (state IN
                      ('draft', 'submitted', 'approved', 'rejected', 'shipped', 'received',
                       'closed', 'cancelled')),
    reason          TEXT NOT NULL DEFAULT '',
    details         TEXT NOT NULL DEFAULT '{}',
    rma_number      TEXT,
    replacement_id  INTEGER REFERENCES devices (id),
    created_us      INTEGER NOT NULL,
    updated_us      INTEGER NOT NULL
);
CREATE INDEX service_requests_company ON service_requests (company_id, state);

CREATE TABLE audit_log (
    id              INTEGER PRIMARY KEY,
    at_us           INTEGER NOT NULL,
    user_id         INTEGER REFERENCES users (id),
    action          TEXT NOT NULL,
    target_kind     TEXT NOT NULL DEFAULT '',
    target_id       INTEGER,
    details         TEXT NOT NULL DEFAULT ''
);

CREATE TABLE email_outbox (
    id              INTEGER PRIMARY KEY,
    created_us      INTEGER NOT NULL,
    to_address      TEXT NOT NULL,
    subject         TEXT NOT NULL,
    body_text       TEXT NOT NULL,
    sent_us         INTEGER,
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT NOT NULL DEFAULT ''
);
