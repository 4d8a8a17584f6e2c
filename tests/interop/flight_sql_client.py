"""A stock Arrow Flight SQL client (ADBC) against Sunfleet's Flight SQL endpoint.

Usage: flight_sql_client.py URI USER PASSWORD [CA_PEM]
Reads SQL statements from standard input, one per line, and prints each result as
"<row values joined by commas>" lines, then "--" after each statement. A failing
statement prints "error: <message>" instead. URI grpc+tls://... needs CA_PEM.
"""

import sys

import adbc_driver_flightsql
import adbc_driver_flightsql.dbapi as flight_sql

uri, user, password = sys.argv[1:4]
db_kwargs = {"username": user, "password": password}
if len(sys.argv) > 4:
    with open(sys.argv[4]) as f:
        db_kwargs[adbc_driver_flightsql.DatabaseOptions.TLS_ROOT_CERTS.value] = f.read()

try:
    conn = flight_sql.connect(uri, db_kwargs=db_kwargs)
except Exception as e:  # sign-in failures surface here or at the first statement
    print(f"error: {e}")
    sys.exit(0)

with conn:
    for sql in sys.stdin.read().splitlines():
        if not sql.strip():
            continue
        try:
            with conn.cursor() as cursor:
                cursor.execute(sql)
                table = cursor.fetch_arrow_table()
            for row in table.to_pylist():
                print(",".join(str(v) for v in row.values()))
        except Exception as e:
            print(f"error: {e}".replace("\n", " "))
        print("--")
