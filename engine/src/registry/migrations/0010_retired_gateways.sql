-- Ingest looks every second for gateways retired since its last look, to close their open
-- connections: an index keeps that a lookup, not a scan of every device.
CREATE INDEX devices_retired_gateways ON devices (retired_us)
    WHERE kind = 'gateway' AND state = 'retired';
