#!/usr/bin/env bash
# The GitHub Action's run step (action.yml): runs `refinery refine|evaluate|batch` as the
# inputs say, or lists a batch's tasks for a matrix (`list-tasks`), then has
# `refinery ci summarize` write the job summary, the step outputs and the artifacts folder.
# It always exits 0 once refinery has run (the exit code is an output); conclude.sh decides
# whether the step passes, after the artifacts are uploaded.
#
# Inputs come as INPUT_* variables (action.yml maps each input); REFINERY_BIN is the binary.
# Keys come from the step's environment and are only ever read by refinery itself: this
# script never prints a variable's value other than the inputs it validates, and never runs
# with `set -x`.
set -euo pipefail

refinery="${REFINERY_BIN:?REFINERY_BIN is not set (the install step sets it)}"
out="${GITHUB_OUTPUT:?GITHUB_OUTPUT is not set}"
summary_file="${GITHUB_STEP_SUMMARY:?GITHUB_STEP_SUMMARY is not set}"
command="${INPUT_COMMAND:-refine}"

fail() {
  echo "::error title=Refinery::$*" >&2
  exit 1
}

# Inputs that only some commands take: a value given to another command is a mistake.
only_for() {
  local commands="$1" name="$2" value="$3"
  if [ -n "$value" ] && [[ " $commands " != *" $command "* ]]; then
    fail "input '$name' does not apply to command '$command' (only to: $commands)"
  fi
}

# A number input: digits with at most one decimal point.
number() {
  local name="$1" value="$2"
  if [ -n "$value" ] && ! [[ "$value" =~ ^[0-9]+(\.[0-9]+)?$ ]]; then
    fail "input '$name' must be a number, got '$value'"
  fi
}

case "$command" in
  refine | evaluate | batch | list-tasks) ;;
  *) fail "input 'command' must be refine, evaluate, batch or list-tasks, got '$command'" ;;
esac

only_for "refine" path "${INPUT_PATH:-}"
only_for "refine" builder "${INPUT_BUILDER:-}"
only_for "refine" verify "${INPUT_VERIFY:-}"
only_for "refine" max-rounds "${INPUT_MAX_ROUNDS:-}"
only_for "refine" time-budget "${INPUT_TIME_BUDGET:-}"
only_for "refine" worktree "$([ "${INPUT_WORKTREE:-false}" = true ] && echo true)"
only_for "refine evaluate" task "${INPUT_TASK:-}"
only_for "refine evaluate" criteria "${INPUT_CRITERIA:-}"
only_for "refine evaluate" criteria-file "${INPUT_CRITERIA_FILE:-}"
only_for "refine evaluate" evaluators "${INPUT_EVALUATORS:-}"
only_for "evaluate" paths "${INPUT_PATHS:-}"
only_for "batch list-tasks" file "${INPUT_FILE:-}"
only_for "batch list-tasks" only "${INPUT_ONLY:-}"
only_for "batch" jobs "${INPUT_JOBS:-}"
number max-rounds "${INPUT_MAX_ROUNDS:-}"
number jobs "${INPUT_JOBS:-}"
number cost-budget "${INPUT_COST_BUDGET:-}"
number call-timeout "${INPUT_CALL_TIMEOUT:-}"
case "${INPUT_WORKTREE:-false}" in true | false) ;; *) fail "input 'worktree' must be true or false" ;; esac
passing="${INPUT_PASSING_EXIT_CODES:-0}"
for ok in ${passing//,/ }; do
  [[ "$ok" =~ ^[0-9]+$ ]] || fail "passing-exit-codes must list exit codes (e.g. '0 2'), got '$ok'"
done

cd "${INPUT_WORKING_DIRECTORY:-.}"

args=("$command")
[ "$command" = list-tasks ] && args=(batch)

# Each non-empty line of $2 becomes `$1 line` (verify commands, evaluators, paths).
per_line() {
  local flag="$1" line
  while IFS= read -r line || [ -n "$line" ]; do
    line="${line#"${line%%[![:space:]]*}"}"
    line="${line%"${line##*[![:space:]]}"}"
    [ -z "$line" ] && continue
    if [ -n "$flag" ]; then args+=("$flag" "$line"); else args+=("$line"); fi
  done <<<"$2"
}

case "$command" in
  refine)
    if [ -n "${INPUT_PATH:-}" ] && [ -n "${INPUT_TASK:-}" ]; then
      fail "give either 'task' (what to build) or 'path' (what to improve), not both"
    elif [ -n "${INPUT_PATH:-}" ]; then
      args+=("$INPUT_PATH")
    elif [ -n "${INPUT_TASK:-}" ]; then
      args+=("$INPUT_TASK")
    else
      fail "command 'refine' needs 'task' (what to build) or 'path' (what to improve)"
    fi
    [ -n "${INPUT_BUILDER:-}" ] && args+=(--builder "$INPUT_BUILDER")
    per_line --verify "${INPUT_VERIFY:-}"
    [ -n "${INPUT_MAX_ROUNDS:-}" ] && args+=(--max-rounds "$INPUT_MAX_ROUNDS")
    [ -n "${INPUT_TIME_BUDGET:-}" ] && args+=(--time-budget "$INPUT_TIME_BUDGET")
    [ "${INPUT_WORKTREE:-false}" = true ] && args+=(--worktree)
    ;;
  evaluate)
    [ -n "${INPUT_PATHS:-}" ] || fail "command 'evaluate' needs 'paths' (files or folders, one a line)"
    per_line "" "$INPUT_PATHS"
    [ -n "${INPUT_TASK:-}" ] && args+=(--task "$INPUT_TASK")
    ;;
  batch | list-tasks)
    [ -n "${INPUT_FILE:-}" ] || fail "command '$command' needs 'file' (the batch file)"
    args+=("$INPUT_FILE")
    per_line --only "$(tr ', ' '\n' <<<"${INPUT_ONLY:-}")"
    [ -n "${INPUT_JOBS:-}" ] && args+=(--jobs "$INPUT_JOBS")
    ;;
esac
case "$command" in
  refine | evaluate)
    [ -n "${INPUT_CRITERIA:-}" ] && args+=(--criteria "$INPUT_CRITERIA")
    [ -n "${INPUT_CRITERIA_FILE:-}" ] && args+=(--criteria-file "$INPUT_CRITERIA_FILE")
    per_line --evaluator "$(tr ' ' '\n' <<<"${INPUT_EVALUATORS:-}")"
    args+=(--yes)
    ;;
esac
[ -n "${INPUT_COST_BUDGET:-}" ] && args+=(--cost-budget "$INPUT_COST_BUDGET")

if [ "$command" = list-tasks ]; then
  tasks="$("$refinery" "${args[@]}" --list-json)"
  echo "$tasks"
  {
    echo "tasks=$tasks"
    echo "exit-code=0"
    echo "verdict=listed"
  } >>"$out"
  exit 0
fi

[ -n "${INPUT_CALL_TIMEOUT:-}" ] && args+=(--call-timeout "$INPUT_CALL_TIMEOUT")
args+=(--json)

work="$(mktemp -d "${RUNNER_TEMP:-/tmp}/refinery-XXXXXX")"
events="$work/events.jsonl"
echo "running: refinery ${args[0]} (events in $events)"
# The events go to the log as they come (refinery masks secrets in everything it prints).
set +e
"$refinery" "${args[@]}" | tee "$events"
code="${PIPESTATUS[0]}"
set -e
echo "refinery ${args[0]} exited $code"

summarize=(ci summarize --command "${args[0]}" --events "$events" --exit-code "$code"
  --step-summary "$summary_file" --outputs "$out" --artifacts "$work/artifacts")
[ -n "${INPUT_ARTIFACT_NAME:-}" ] && summarize+=(--artifact-name "$INPUT_ARTIFACT_NAME")
"$refinery" "${summarize[@]}"
