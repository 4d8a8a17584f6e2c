"""One SQL connection kept open across a change made elsewhere (a deactivation, a new
password), with a stock driver: psycopg for the Postgres endpoint, ADBC for Flight SQL.

Usage: standing_sql_session.py postgres|flight HOST PORT USER PASSWORD
Signs in, runs "SELECT count(*) FROM systems" and prints "count,<n>", then "ready". For
each line then read from standard input it runs the same statement on the same
connection and prints "count,<n>" or "error: <message>". Output is flushed line by line.
"""

import sys

protocol, host, port, user, password = sys.argv[1:6]
SQL = "SELECT count(*) FROM systems"

if protocol == "postgres":
    import psycopg

    conn = psycopg.connect(
        host=host, port=int(port), user=user, password=password, dbname="sunfleet",
        autocommit=True,
    )

    def count():
        return conn.execute(SQL).fetchone()[0]
else:
    import adbc_driver_flightsql.dbapi as flight_sql

    conn = flight_sql.connect(
        f"grpc://{host}:{port}", db_kwargs={"username": user, "password": password}
    )

    def count():
        with conn.cursor() as cursor:
            cursor.execute(SQL)
            return cursor.fetchone()[0]


def run():
    try:
        print(f"count,{count()}", flush=True)
    except Exception as e:  # the refusal is the answer under test
        print(f"error: {e}".replace("\n", " "), flush=True)


run()
print("ready", flush=True)
for _ in sys.stdin:
    run()
