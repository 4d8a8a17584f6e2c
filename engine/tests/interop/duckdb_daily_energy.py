"""Per-system, per-site-local-day microinverter energy, computed by DuckDB straight from the
engine's Parquet partition folders (no Sunfleet code involved).

Usage: duckdb_daily_energy.py PARQUET_ROOT ZONES_CSV
ZONES_CSV has a header `system_id,time_zone`. Prints `system_id,local_date,energy_j` lines.
A reading's timestamp ends its interval, so it counts on the local date of (time - 1 µs).
"""
import sys

import duckdb

root, zones = sys.argv[1], sys.argv[2]
rows = duckdb.sql(
    f"""
    WITH zones AS (SELECT * FROM read_csv('{zones}', header = true,
                                          columns = {{'system_id': 'UINTEGER', 'time_zone': 'VARCHAR'}}))
    SELECT r.system_id,
           CAST(timezone(z.time_zone, r.time - INTERVAL 1 MICROSECOND) AS DATE) AS local_date,
           SUM(r.energy_j) AS energy_j
      FROM read_parquet('{root}/readings/*/*.parquet', hive_partitioning = true) r
      JOIN zones z USING (system_id)
     GROUP BY ALL
     ORDER BY ALL
    """
).fetchall()
for system_id, local_date, energy_j in rows:
    print(f"{system_id},{local_date},{energy_j}")
