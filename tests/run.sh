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
# Test files run in parallel. First everything but the SLURM lanes: the SLURM tests that need the cluster to
# themselves (they fill or drain its one node, stop its sshd, read its log) as one group on one worker, the
# rest beside them. Then the lanes side by side, each as its own cluster user: tests marked `slurm_lane(N)`
# touch only their user's jobs and logins (tests/conftest.py). TAOBOT_TEST_WORKERS=1 runs the first part one
# test after another.
WORKERS=${TAOBOT_TEST_WORKERS:-3}
LANES=3 # as many as tests/services has lane users (SSH_LANE_USERS, and lane 1's own)
PYTEST=(.venv/bin/python -m pytest -q --durations=20)
passed() { [ "$1" = 0 ] || [ "$1" = 5 ]; } # 5: nothing collected (the arguments named no test of that part)
failed=0
rc=0
"${PYTEST[@]}" -n "$WORKERS" --dist loadgroup -m "not slurm_lane" "$@" || rc=$?
passed "$rc" || failed=1
LANE_LOGS=$(mktemp -d)
pids=()
for lane in $(seq 2 "$LANES"); do
  TAOBOT_TEST_SLURM_LANE=$lane "${PYTEST[@]}" -p no:xdist -p no:cacheprovider "$@" > "$LANE_LOGS/$lane" 2>&1 &
  pids+=("$!")
done
echo "== SLURM lane 1 (lanes 2 to $LANES run beside it; their output follows)"
rc=0
TAOBOT_TEST_SLURM_LANE=1 "${PYTEST[@]}" -p no:xdist "$@" || rc=$?
passed "$rc" || failed=1
for lane in $(seq 2 "$LANES"); do
  rc=0
  wait "${pids[$((lane - 2))]}" || rc=$?
  echo "== SLURM lane $lane"
  cat "$LANE_LOGS/$lane"
  passed "$rc" || failed=1
done
rm -rf "$LANE_LOGS"
exit "$failed"
