# shellcheck shell=bash
# The step runner the shell test scripts share (tests/interop/ctr.sh,
# tests/deploy/docker-cluster.sh). Source it, then:
#   step NAME COMMAND [ARGS...]   run COMMAND in a subshell with `set -e`;
#                                 print "ok   - NAME (Ns)" or "FAIL - NAME (Ns)"
#   fail MESSAGE...               inside a step: report and end the step
# A script may define `on_step_failure`, called after every failed step
# (e.g. to restore state for the next one). Counters: PASSED, FAILED,
# FAILED_STEPS; STEP holds the running step's name.

# STEP is set inside the step's subshell on purpose: `fail` runs there too.
# shellcheck disable=SC2030,SC2031

PASSED=0
FAILED=0
FAILED_STEPS=()
STEP=""

step() {
    local name=$1 rc started=$SECONDS
    shift
    set +e
    (
        set -e
        STEP=$name
        "$@"
    )
    rc=$?
    set -e
    if ((rc == 0)); then
        PASSED=$((PASSED + 1))
        echo "ok   - $name ($((SECONDS - started))s)"
    else
        FAILED=$((FAILED + 1))
        FAILED_STEPS+=("$name")
        echo "FAIL - $name ($((SECONDS - started))s)"
        if declare -F on_step_failure >/dev/null; then
            on_step_failure
        fi
    fi
}

fail() {
    echo "    [$STEP] $*" >&2
    exit 1
}
