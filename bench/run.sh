#!/bin/sh
# Builds the release binaries and runs the benchmarks; see bench/README.md.
exec python3 "$(dirname "$0")/run.py" "$@"
