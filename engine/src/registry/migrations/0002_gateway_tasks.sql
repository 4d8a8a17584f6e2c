-- Gateway tasks report progress: a gateway says when it started a task, then whether it
-- succeeded or failed. SQLite cannot alter a CHECK constraint, so the table is rebuilt.
CREATE TABLE gateway_tasks_new (
    id              INTEGER PRIMARY KEY,
    gateway_id      INTEGER NOT NULL REFERENCES devices (id),
    kind            TEXT NOT NULL CHECK (kind IN
                      ('production_on', 'production_off', 'reboot', 'provision_devices',
                       'meter_mode', 'grid_profile', 'check_signal', 'scan_devices',
                       'clear_gfi', 'reset_dc_resistance')),
    parameters      TEXT NOT NULL DEFAULT '{}',
    state           TEXT NOT NULL DEFAULT 'queued'
                      CHECK (state IN ('queued', 'sent', 'started', 'succeeded', 'failed',
                                       'cancelled')),
    created_by      INTEGER REFERENCES users (id),
    created_us      INTEGER NOT NULL,
    sent_us         INTEGER,
    started_us      INTEGER,
    finished_us     INTEGER,
    result          TEXT NOT NULL DEFAULT ''
);
INSERT INTO gateway_tasks_new
    (id, gateway_id, kind, parameters, state, created_by, created_us, sent_us, finished_us, result)
    SELECT id, gateway_id, kind, parameters, state, created_by, created_us, sent_us, finished_us,
           result
      FROM gateway_tasks;
DROP TABLE gateway_tasks;
ALTER TABLE gateway_tasks_new RENAME TO gateway_tasks;
CREATE INDEX gateway_tasks_pending ON gateway_tasks (gateway_id, state);
-- The dispatcher looks for queued tasks across the fleet every second.
CREATE INDEX gateway_tasks_queued ON gateway_tasks (gateway_id) WHERE state = 'queued';
