-- Service requests get the status installers follow on the dashboard (issue #8): new → in
-- progress → approved → shipped (returns and replacements) → resolved, or rejected, each
-- change kept in a history written in the same transaction as the change. A return names
-- one or more devices, listed in their own table.
--
-- The first schema's states map onto the new ones: draft and submitted were not yet looked
-- at (new); approved and shipped keep their names; received (the unit came back) and closed
-- ended the request (resolved); cancelled ended it unserved (rejected). Each existing
-- request gets a history: its filing as `new`, then, when it had moved on, its state at its
-- last change, with the old state in the note.

CREATE TABLE service_requests_new (
    id              INTEGER PRIMARY KEY,
    kind            TEXT NOT NULL CHECK (kind IN
                      ('return', 'replacement', 'permit', 'incentive', 'labor_claim')),
    system_id       INTEGER NOT NULL REFERENCES systems (id),
    -- One device the request is about; a return's devices are in service_request_devices.
    device_id       INTEGER REFERENCES devices (id),
    company_id      INTEGER NOT NULL REFERENCES companies (id),
    created_by      INTEGER REFERENCES users (id),
    state           TEXT NOT NULL DEFAULT 'new' CHECK (state IN
                      ('new', 'in_progress', 'approved', 'shipped', 'resolved', 'rejected')),
    reason          TEXT NOT NULL DEFAULT '',
    details         TEXT NOT NULL DEFAULT '{}',
    rma_number      TEXT,
    replacement_id  INTEGER REFERENCES devices (id),
    created_us      INTEGER NOT NULL,
    updated_us      INTEGER NOT NULL
);

INSERT INTO service_requests_new
    (id, kind, system_id, device_id, company_id, created_by, state, reason, details,
     rma_number, replacement_id, created_us, updated_us)
SELECT id, kind, system_id, device_id, company_id, created_by,
       CASE state
           WHEN 'draft' THEN 'new'
           WHEN 'submitted' THEN 'new'
           WHEN 'approved' THEN 'approved'
           WHEN 'shipped' THEN 'shipped'
           WHEN 'received' THEN 'resolved'
           WHEN 'closed' THEN 'resolved'
           ELSE 'rejected'
       END,
       reason, details, rma_number, replacement_id, created_us, updated_us
  FROM service_requests;

CREATE TABLE service_request_history (
    id              INTEGER PRIMARY KEY,
    request_id      INTEGER NOT NULL REFERENCES service_requests (id),
    state           TEXT NOT NULL CHECK (state IN
                      ('new', 'in_progress', 'approved', 'shipped', 'resolved', 'rejected')),
    at_us           INTEGER NOT NULL,
    -- Who made the change; NULL for changes recorded by the system itself.
    by_user         INTEGER REFERENCES users (id),
    note            TEXT NOT NULL DEFAULT ''
);
CREATE INDEX service_request_history_request ON service_request_history (request_id, id);

INSERT INTO service_request_history (request_id, state, at_us, by_user, note)
SELECT id, 'new', created_us, created_by, '' FROM service_requests;

INSERT INTO service_request_history (request_id, state, at_us, by_user, note)
SELECT n.id, n.state, o.updated_us, NULL,
       'state "' || o.state || '" before the status history began'
  FROM service_requests o JOIN service_requests_new n ON n.id = o.id
 WHERE n.state <> 'new';

-- The devices a return is about (a return may send several units back at once).
CREATE TABLE service_request_devices (
    request_id      INTEGER NOT NULL REFERENCES service_requests (id),
    device_id       INTEGER NOT NULL REFERENCES devices (id),
    PRIMARY KEY (request_id, device_id)
);
CREATE INDEX service_request_devices_device ON service_request_devices (device_id);

INSERT INTO service_request_devices (request_id, device_id)
SELECT id, device_id FROM service_requests WHERE kind = 'return' AND device_id IS NOT NULL;

DROP TABLE service_requests;
ALTER TABLE service_requests_new RENAME TO service_requests;
CREATE INDEX service_requests_company ON service_requests (company_id, state);
CREATE INDEX service_requests_system ON service_requests (system_id);
