#!/usr/bin/env bash
# The whole test suite from nothing: the real services the tests talk to
# (sshd + SLURM, dockerd, kube-apiserver, S3; see tests/services/README.md),
# a fresh virtualenv with taobot and its test dependencies, ruff (lint, format), then pytest.
# Needs root for the services (Debian packages, daemons on 127.0.0.1).
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "tests/run.sh starts real sshd/SLURM/dockerd/kube-apiserver/S3 servers and needs root (try: sudo bash tests/run.sh)" >&2
  exit 2
fi
bash tests/services/setup.sh
PY=${PYTHON:-python3}
"$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'
# Lint and format first: a style slip fails in seconds, not after the services ran.
.venv/bin/ruff check .
.venv/bin/ruff format --check .
# The published skill-bank snapshots are not in the repository. Where they sit beside it
# (../shared, as in CI) their checks must run and pass; a clone alone leaves them out, and says so.
SEED_BANK=${TAO_SKILL_BANK_TEST_PATH:-../shared/tao-skill-bank}
TODAY_BANK=${TAO_SKILL_BANK_2026_TEST_PATH:-../shared/tao-skill-bank-2026-08}
if [ -d "$SEED_BANK" ] || [ -d "$TODAY_BANK" ]; then
  export TAOBOT_SKILL_BANK_SNAPSHOTS=required
  export TAO_SKILL_BANK_TEST_PATH="$SEED_BANK" TAO_SKILL_BANK_2026_TEST_PATH="$TODAY_BANK"
else
  echo "tests/run.sh: no skill-bank snapshots at $SEED_BANK or $TODAY_BANK: tests/test_skill_bank_snapshots.py is not run" >&2
  set -- --ignore=tests/test_skill_bank_snapshots.py "$@"
fi
# Test files run in parallel: the SLURM ones (marked `slurm`, one shared cluster user) as one group on one
# worker, the rest beside them (tests/conftest.py). TAOBOT_TEST_WORKERS=1 runs them one after another.
WORKERS=${TAOBOT_TEST_WORKERS:-3}
exec .venv/bin/python -m pytest -q -n "$WORKERS" --dist loadgroup --durations=20 "$@"
