#!/usr/bin/env bash
# Kill train.py with SIGKILL at 20 random points, resume each with --resume, and compare the final
# weights bit for bit with an uninterrupted run; prints "N/20 identical" (scripts/crash_test.py).
#   bash scripts/crash_test.sh [more crash_test.py flags, e.g. --signal TERM --work /tmp/crash]
set -euo pipefail
PYTHON=${PYTHON:-python}
exec "$PYTHON" "$(dirname "$0")/crash_test.py" --points "${POINTS:-20}" "$@"
