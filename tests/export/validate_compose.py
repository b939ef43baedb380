"""Validates a compose file against the compose-spec JSON schema.

Usage: python validate_compose.py SCHEMA.json COMPOSE.yaml
Prints each violation (its path and message) and exits 1 when there is
one; run by tests/tests/e2e/export.rs with the venv of requirements.txt.
"""
import json
import sys

import jsonschema
import yaml

with open(sys.argv[1]) as f:
    schema = json.load(f)
with open(sys.argv[2]) as f:
    document = yaml.safe_load(f)
# The schema declares draft 2019-09 (by a URL jsonschema does not know).
errors = sorted(
    jsonschema.Draft201909Validator(schema).iter_errors(document), key=str
)
for error in errors:
    print("/".join(map(str, error.absolute_path)) + ": " + error.message)
sys.exit(1 if errors else 0)
