"""A stock Postgres driver (psycopg 3) against Sunfleet's Postgres endpoint.

Usage: postgres_client.py HOST PORT USER PASSWORD SYSTEM_ID
Prints, for SYSTEM_ID: "energy,<system_id>,<joules>,<rows>" from a query with bound
parameters (an integer and a timestamp, in text format), then "name,<id>,<name>" from a
binary-format cursor. psycopg opens a transaction (BEGIN) and commits it on exit.
"""

import datetime
import sys

import psycopg

host, port, user, password, system_id = sys.argv[1:6]
system_id = int(system_id)
since = datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)

with psycopg.connect(
    host=host, port=int(port), user=user, password=password, dbname="sunfleet"
) as conn:
    rows = conn.execute(
        "SELECT system_id, sum(energy_j) AS joules, count(*) AS n FROM readings "
        "WHERE system_id = %s AND time >= %s GROUP BY system_id",
        (system_id, since),
    ).fetchall()
    for sid, joules, n in rows:
        print(f"energy,{sid},{joules},{n}")
    with conn.cursor(binary=True) as cursor:
        cursor.execute("SELECT id, name FROM systems WHERE id = %s", (system_id,))
        for sid, name in cursor.fetchall():
            print(f"name,{sid},{name}")
