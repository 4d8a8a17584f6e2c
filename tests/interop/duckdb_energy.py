"""DuckDB reads Sunfleet's readings Parquet files directly.

Usage: duckdb_energy.py DATA_FOLDER
Prints "<system_id>,<joules>,<rows>" per system, ordered by system.
"""

import sys

import duckdb

folder = sys.argv[1]
rows = duckdb.sql(
    f"""SELECT system_id, sum(energy_j)::BIGINT, count(*)
        FROM read_parquet('{folder}/parquet/readings/*/*.parquet', hive_partitioning = true)
        GROUP BY system_id ORDER BY system_id"""
).fetchall()
for system_id, joules, n in rows:
    print(f"{system_id},{joules},{n}")
