#!/usr/bin/env bash
# The GitHub Action's last step (action.yml): passes or fails by refinery's exit code, after
# the artifacts are uploaded. Exit codes (docs/USAGE.md): 0 converged (evaluate: every
# criterion meets the bar; batch: every task converged), 2 stopped by a cap, a budget or a
# plateau (evaluate: below the bar; batch: a task stopped), 1 error (batch: a task failed),
# 130 interrupted. INPUT_PASSING_EXIT_CODES lists the codes that pass (default: 0).
set -euo pipefail

code="${REFINERY_EXIT_CODE:-}"
passing="${INPUT_PASSING_EXIT_CODES:-0}"
passing="${passing//,/ }"
for ok in $passing; do
  [[ "$ok" =~ ^[0-9]+$ ]] || {
    echo "::error title=Refinery::passing-exit-codes must list exit codes (e.g. '0 2'), got '$ok'" >&2
    exit 1
  }
done
if [ -z "$code" ]; then
  echo "::error title=Refinery::refinery did not run (see the run step's error)" >&2
  exit 1
fi
case "$code" in
  0) meaning="converged, or every criterion meets the bar" ;;
  2) meaning="stopped by a cap, a budget or a plateau, or below the bar" ;;
  1) meaning="error" ;;
  130) meaning="interrupted" ;;
  *) meaning="unexpected exit code" ;;
esac
for ok in $passing; do
  if [ "$ok" = "$code" ]; then
    echo "refinery exited $code ($meaning): passing (passing-exit-codes: $passing)"
    exit 0
  fi
done
echo "::error title=Refinery::refinery exited $code ($meaning); passing-exit-codes is '$passing'" >&2
exit 1
