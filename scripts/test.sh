#!/usr/bin/env bash
# Set up (idempotent), start a throwaway PostgreSQL for the store tests, lint, run the suite.
# Extra arguments go to pytest, e.g. scripts/test.sh -k booking -x
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
if [ -z "${VOICEBOT_TEST_PG_URL:-}" ]; then
  # shellcheck disable=SC1091
  source scripts/pg-test-server.sh
fi
.venv/bin/ruff check voicebot booking tests scripts
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
