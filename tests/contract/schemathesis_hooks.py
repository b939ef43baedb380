"""Schemathesis hooks of the REST property run (tests/tests/e2e/schemathesis.rs).

Loaded through SCHEMATHESIS_HOOKS. They keep the generated requests bounded
and the daemon under test populated, and add the one check schemathesis
lacks for our streams:

- every streaming route is called without `follow` semantics or with a
  bounded wait, so no request outlives its timeout (endless streams are
  excluded by the test itself);
- a generated app spec never carries its own `env.PATH` (the daemon's
  PATH is an empty directory, so no bare command name resolves);
- the apps the test created before the run come back whenever a generated
  call may have removed them (checked after every DELETE or POST that
  answered 200), so the read routes keep having data to answer with;
- `ndjson_lines_conform`: each line of an `application/x-ndjson` reply
  (a server stream) is checked against the schema the document gives for
  one line; schemathesis itself only reads whole JSON bodies.

Environment, set by the test: PMD_ST_BASE_URL, PMD_ST_TOKEN, PMD_ST_SPEC (the
OpenAPI document as the daemon served it, a file), PMD_ST_FIXTURES (JSON: the
StartProcess bodies of the apps to keep), PMD_ST_LINES (a file: the count of
NDJSON lines checked).
"""

import json
import os

import jsonschema_rs
import requests
import schemathesis

BASE_URL = os.environ["PMD_ST_BASE_URL"]
TOKEN = os.environ["PMD_ST_TOKEN"]
FIXTURES = json.loads(os.environ["PMD_ST_FIXTURES"])
with open(os.environ["PMD_ST_SPEC"], encoding="utf-8") as f:
    DOCUMENT = json.load(f)

# Upper bound, in milliseconds, of the waits a request may ask for: a
# generated WaitReady, reload or dependency wait on an app that never gets
# ready would otherwise wait for as long as the fuzzer asked (up to an
# hour), longer than the run's request timeout.
MAX_WAIT_MS = "2000"


def _bound_waits(body):
    """Caps every wait of a request body (a uint64, as a string or a number) at MAX_WAIT_MS."""
    if not isinstance(body, dict):
        return
    for key, value in body.items():
        if not (key.endswith("TimeoutMs") or key.endswith("timeout_ms")):
            continue
        try:
            too_long = int(value) > int(MAX_WAIT_MS)
        except (TypeError, ValueError):
            # Not a number: the request is refused before anything waits.
            continue
        if too_long:
            body[key] = MAX_WAIT_MS


def _specs(body):
    """The app specs of a StartProcess or ApplyApps body."""
    if not isinstance(body, dict):
        return []
    specs = [body.get("spec")] + (body.get("apps") if isinstance(body.get("apps"), list) else [])
    return [s for s in specs if isinstance(s, dict)]


@schemathesis.hook
def before_call(context, case, kwargs):
    if case.operation.path == "/v1/logs" and isinstance(case.query, dict):
        # `follow` keeps a log stream open until the client leaves; the
        # history alone is what a bounded run can read.
        if "follow" in case.query:
            case.query["follow"] = "false"
    _bound_waits(case.body)
    # Safety: the daemon runs with PATH set to an empty directory, so a
    # generated bare command name runs nothing; an app's own env.PATH would
    # win over it, so it never reaches the daemon.
    for spec in _specs(case.body):
        if isinstance(spec.get("env"), dict):
            spec["env"].pop("PATH", None)


def _auth():
    return {"Authorization": f"Bearer {TOKEN}"}


def _restore_fixtures():
    listed = requests.get(f"{BASE_URL}/v1/processes", headers=_auth(), timeout=10)
    listed.raise_for_status()
    names = {p["name"] for p in listed.json()["processes"]}
    for body in FIXTURES:
        if body["spec"]["name"] not in names:
            started = requests.post(
                f"{BASE_URL}/v1/processes", json=body, headers=_auth(), timeout=30
            )
            started.raise_for_status()


@schemathesis.hook
def after_call(context, case, response):
    # DELETE, and an ApplyApps or StartProcess that replaced a fixture,
    # may remove what the read routes answer with.
    if case.method.upper() in ("DELETE", "POST") and response.status_code == 200:
        _restore_fixtures()


def _line_validator(path, method):
    """A validator of one line of the operation's 200 NDJSON reply."""
    operation = DOCUMENT["paths"][path][method.lower()]
    content = operation["responses"]["200"]["content"]["application/x-ndjson"]
    # The line's schema refers to #/components/...: validate it inside a
    # document that carries the components.
    schema = {"allOf": [content["schema"]], "components": DOCUMENT["components"]}
    return jsonschema_rs.validator_for(schema)


_VALIDATORS = {}


def _count_lines(n):
    """Adds `n` to the count of NDJSON lines checked, kept in PMD_ST_LINES:
    the test asserts streams were really read and checked."""
    path = os.environ["PMD_ST_LINES"]
    try:
        with open(path, encoding="utf-8") as f:
            total = int(f.read() or 0)
    except FileNotFoundError:
        total = 0
    with open(path, "w", encoding="utf-8") as f:
        f.write(str(total + n))


@schemathesis.check
def ndjson_lines_conform(ctx, response, case):
    """Each line of a server stream's NDJSON reply conforms to the documented line schema."""
    content_type = (response.headers.get("content-type") or [""])[0]
    if response.status_code != 200 or not content_type.startswith("application/x-ndjson"):
        return None
    key = (case.operation.path, case.method)
    if key not in _VALIDATORS:
        _VALIDATORS[key] = _line_validator(*key)
    validator = _VALIDATORS[key]
    lines = response.content.decode("utf-8").splitlines()
    _count_lines(len(lines))
    for number, line in enumerate(lines, 1):
        value = json.loads(line)
        errors = [str(e) for e in validator.iter_errors(value)]
        if errors:
            raise AssertionError(
                f"line {number} of the NDJSON reply does not match the documented schema: "
                f"{errors[0]}\n{line[:500]}"
            )
        if not isinstance(value, dict) or len(value) != 1 or not ({"result", "error"} & value.keys()):
            raise AssertionError(f"line {number} is neither {{\"result\"}} nor {{\"error\"}}: {line[:500]}")
    return True
