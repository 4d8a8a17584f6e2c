-- Power production switched off by command (C6) is a system status of its own, so a
-- system that produces nothing on purpose says why instead of raising a production issue.
-- SQLite cannot alter a CHECK constraint, so the table is rebuilt (the migration runs with
-- foreign keys off and checks them before it commits).
CREATE TABLE systems_new (
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
                              ('normal', 'comm', 'production_off', 'micro', 'power', 'meter',
                               'meter_issue', 'battery', 'storage_idle', 'deactivated',
                               'retired', 'not_monitored')),
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
    created_us              INTEGER NOT NULL,
    expected_microinverters INTEGER
                              CHECK (expected_microinverters IS NULL
                                     OR expected_microinverters BETWEEN 1 AND 10000)
);
INSERT INTO systems_new (
    id, name, kind, installer_id, owner_id, installer_reference,
    other_references, third_party_owned, street_address, city, region, postal_code,
    country, latitude, longitude, elevation_m, time_zone, stage,
    status, status_since_us, internet_connection,
    attachment_type, install_date, operational_date, weather_enabled, production_source, kiosk_content,
    estimate_level, annual_degradation_pct, threshold_pct, threshold_days, created_us, expected_microinverters)
SELECT
    id, name, kind, installer_id, owner_id, installer_reference,
    other_references, third_party_owned, street_address, city, region, postal_code,
    country, latitude, longitude, elevation_m, time_zone, stage,
    status, status_since_us, internet_connection,
    attachment_type, install_date, operational_date, weather_enabled, production_source, kiosk_content,
    estimate_level, annual_degradation_pct, threshold_pct, threshold_days, created_us, expected_microinverters
  FROM systems;
DROP TABLE systems;
ALTER TABLE systems_new RENAME TO systems;
CREATE INDEX systems_installer ON systems (installer_id);
CREATE INDEX systems_name ON systems (name COLLATE NOCASE);
