"""Schemathesis against the portal's JSON API, as its OpenAPI description states it.

Usage: api_schema_check.py PORTAL_URL EMAIL PASSWORD MAX_EXAMPLES

Signs in through the portal's form as EMAIL, creates an API key on the Data & Privacy page
(the way a script's author would), then lets schemathesis generate requests for every
operation of /api/openapi.json with that key. Every check runs: no 5xx, status codes,
content types, headers and bodies as documented. Prints "schemathesis passed" and exits 0
only when every check held; otherwise schemathesis' report says which request broke what.
"""

import html
import re
import subprocess
import sys
import tempfile

import requests

portal, email, password, max_examples = sys.argv[1:5]


def hidden_field(page: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', page)
    if not found:
        sys.exit(f"no hidden field {name} in the page")
    return html.unescape(found.group(1))


session = requests.Session()
form = session.get(f"{portal}/signin", timeout=30)
signed_in = session.post(
    f"{portal}/signin",
    data={
        "email": email,
        "password": password,
        "form_token": hidden_field(form.text, "form_token"),
        "next": "/",
    },
    timeout=30,
)
if "sunfleet_session" not in session.cookies:
    sys.exit(f"sign-in failed: {signed_in.status_code}")
privacy = session.get(f"{portal}/privacy", timeout=30)
created = session.post(
    f"{portal}/privacy/keys",
    data={"csrf_token": hidden_field(privacy.text, "csrf_token"), "name": "schemathesis"},
    timeout=30,
)
key = re.search(r'<code id="new-key">([^<]+)</code>', created.text)
if created.status_code != 200 or not key:
    sys.exit(f"creating an API key failed: {created.status_code}")

# The key goes through schemathesis' OpenAPI-aware auth (the `apiKey` security scheme), so
# its authentication checks also send requests with a wrong or missing key and expect 401.
config = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)
config.write(
    f"""[auth.openapi.apiKey]
bearer = "{key.group(1)}"

# A string the schema allows is not always SQL the parser accepts: for /api/sql a 400 that
# names the parse error is the right answer to schema-valid input.
[[operations]]
include-path = "/api/sql"
checks.positive_data_acceptance.expected-statuses = ["200", "400", "403", "408", "413"]
"""
)
config.close()
run = subprocess.run(
    [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        config.name,
        "run",
        f"{portal}/api/openapi.json",
        "--url",
        portal,
        "--checks",
        "all",
        "--max-examples",
        max_examples,
        "--seed",
        "1",
        "--request-timeout",
        "60",
        "--no-color",
    ],
    check=False,
)
if run.returncode != 0:
    sys.exit(f"schemathesis failed (exit {run.returncode})")
print("schemathesis passed")
