-- Which gateway each device reports through, and replacements (R2, R3).
--
-- The generated fleet has one gateway per system, but a site activated by hand may have
-- several: a gateway replacement (R3) moves exactly the devices of the old gateway.
ALTER TABLE devices ADD COLUMN gateway_id INTEGER REFERENCES devices (id);
-- A battery moved to a new gateway must be provisioned on it again: set when it moved,
-- cleared when a provisioning task naming it succeeds on its gateway.
ALTER TABLE devices ADD COLUMN reprovision_since_us INTEGER;

-- Where a system has exactly one gateway in service, its devices report through it.
UPDATE devices
   SET gateway_id = (SELECT g.id FROM devices g
                      WHERE g.system_id = devices.system_id AND g.kind = 'gateway'
                        AND g.state <> 'retired')
 WHERE kind <> 'gateway'
   AND (SELECT count(*) FROM devices g
         WHERE g.system_id = devices.system_id AND g.kind = 'gateway'
           AND g.state <> 'retired') = 1;

CREATE INDEX devices_gateway ON devices (gateway_id) WHERE gateway_id IS NOT NULL;
-- A device's history follows `replaced_by` backwards (its predecessors).
CREATE INDEX devices_replaced_by ON devices (replaced_by) WHERE replaced_by IS NOT NULL;

-- One replacement: a microinverter or battery swapped for a new unit (`device`: the old
-- one is retired at once, the new one provisioned through `task_id`), or a gateway
-- (`gateway`: pending until the new gateway's first batch is stored, `completed_us`).
CREATE TABLE replacements (
    id              INTEGER PRIMARY KEY,
    system_id       INTEGER NOT NULL REFERENCES systems (id),
    kind            TEXT NOT NULL CHECK (kind IN ('device', 'gateway')),
    old_device_id   INTEGER NOT NULL REFERENCES devices (id),
    new_device_id   INTEGER NOT NULL UNIQUE REFERENCES devices (id),
    task_id         INTEGER REFERENCES gateway_tasks (id),
    requested_by    INTEGER REFERENCES users (id),
    requested_us    INTEGER NOT NULL,
    completed_us    INTEGER,
    -- What a completed gateway replacement moved (JSON counts).
    details         TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX replacements_system ON replacements (system_id, id);
CREATE INDEX replacements_pending ON replacements (new_device_id) WHERE completed_us IS NULL;
