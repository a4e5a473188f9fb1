#!/usr/bin/env bash
# Kill train.py with SIGKILL at 20 random points, resume each with --resume, and compare the final
# weights bit for bit with an uninterrupted run; prints "N/20 identical" (scripts/crash_test.py).
#   bash scripts/crash_test.sh [more crash_test.py flags, e.g. --signal TERM --work /tmp/crash]
#   POINTS=20 bash scripts/crash_test.sh --torchrun 2 --jobs 2     # torchrun jobs of 2 CPU processes
#   POINTS=4 bash scripts/crash_test.sh --torchrun 2 --target rank # SIGKILL one rank of the job only
set -euo pipefail
PYTHON=${PYTHON:-python}
exec "$PYTHON" "$(dirname "$0")/crash_test.py" --points "${POINTS:-20}" "$@"
