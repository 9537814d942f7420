#!/usr/bin/env bash
# Runs the whole test suite against the real embedded stack, which it starts and always stops again.
# Fails when any test fails, errors, or when no test ran at all (pytest exit 5 is a failure here).
set -uo pipefail
cd "$(dirname "$0")/.."
VENV=.venv

"$VENV/bin/rtml" local up || { echo "run-tests: the local stack did not come up (see above)"; "$VENV/bin/rtml" local down; exit 1; }
trap '"$VENV/bin/rtml" local down' EXIT

"$VENV/bin/python" -m pytest tests --durations=25 "$@"
rc=$?
case $rc in
  0) echo "run-tests: all tests passed" ;;
  5) echo "run-tests: FAILED - pytest collected no tests"; rc=1 ;;
  *) echo "run-tests: FAILED - pytest exit code $rc" ;;
esac
exit $rc
