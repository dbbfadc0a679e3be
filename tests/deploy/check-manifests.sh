#!/usr/bin/env bash
# Static checks of everything under deploy/; needs no Docker engine, no
# Kubernetes cluster and no systemd:
#   - every YAML file under deploy/ parses (PyYAML);
#   - deploy/k8s/berth.yaml against the Kubernetes API schemas
#     (`kubernetes-validate --strict`, for 1.28, the oldest version it
#     supports, and for the newest the tool knows), when installed; and always the
#     berth-specific checks of tests/deploy/manifests.py (node ids, peer
#     DNS names, initial cluster, probes, PDB, selectors, volumes);
#   - deploy/compose/docker-compose.yml: `docker-compose config` (when
#     installed) and the cluster layout (manifests.py);
#   - deploy/systemd: `systemd-analyze verify` of the unit (when installed);
#     every BERTH_* key in berth.env is a `berth serve` variable (when a
#     berth binary is there);
#   - the shell scripts parse (`bash -n`; shellcheck when installed).
# Every checker is also run on a broken copy and must reject it, so a check
# that cannot fail does not pass unnoticed.
#
# Usage: tests/deploy/check-manifests.sh
#   BERTH_BIN  berth binary for the env-file check [default: target/release/berth,
#              then target/debug/berth; skipped if neither exists]
# Needs python3 with PyYAML (Debian: python3-yaml). Optional:
# kubernetes-validate (`pip install kubernetes-validate`), docker-compose,
# systemd-analyze, shellcheck; a check whose tool is missing prints `skip`.
# Ends with `N passed, M failed, K skipped`; exits 1 if any check failed.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)
DEPLOY=$REPO_ROOT/deploy
K8S=$DEPLOY/k8s/berth.yaml
COMPOSE=$DEPLOY/compose/docker-compose.yml
UNIT=$DEPLOY/systemd/berth.service
ENVFILE=$DEPLOY/systemd/berth.env
PY=(python3 "$SCRIPT_DIR/manifests.py")

python3 -c 'import yaml' 2>/dev/null || {
    echo "check-manifests.sh: python3 with PyYAML is needed (apt-get install -y python3-yaml)" >&2
    exit 2
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/berth-manifests.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

PASSED=0
FAILED=0
SKIPPED=0
SKIP=77 # a check's exit code for "tool not installed"

# check NAME CMD...: CMD must succeed (exit 77: skipped, last output line says why).
check() {
    local name=$1 rc=0
    shift
    "$@" >"$tmp/log" 2>&1 || rc=$?
    if ((rc == 0)); then
        PASSED=$((PASSED + 1))
        echo "ok   - $name"
    elif ((rc == SKIP)); then
        SKIPPED=$((SKIPPED + 1))
        echo "skip - $name ($(tail -n 1 "$tmp/log"))"
    else
        FAILED=$((FAILED + 1))
        echo "FAIL - $name"
        sed 's/^/    /' "$tmp/log"
    fi
}

# rejects NAME CMD...: CMD must fail (it is a checker run on a broken copy).
rejects() {
    local name=$1 rc=0
    shift
    "$@" >"$tmp/log" 2>&1 || rc=$?
    if ((rc == SKIP)); then
        SKIPPED=$((SKIPPED + 1))
        echo "skip - $name ($(tail -n 1 "$tmp/log"))"
    elif ((rc != 0)); then
        PASSED=$((PASSED + 1))
        echo "ok   - $name: $(grep -v '^INFO' "$tmp/log" | head -n 1 | cut -c1-150)"
    else
        FAILED=$((FAILED + 1))
        echo "FAIL - $name: the broken copy was accepted"
        sed 's/^/    /' "$tmp/log"
    fi
}

# broken ORIG NAME PYTHON-EXPR: writes $tmp/NAME, a copy of ORIG with the
# text replaced by the expression (applied to s); prints the path.
broken() {
    python3 - "$1" "$tmp/$2" "$3" <<'EOF'
import sys
src, dst, expr = sys.argv[1:]
s = open(src).read()
t = eval(expr, {"s": s})
assert t != s, "the mutation changed nothing"
open(dst, "w").write(t)
EOF
    echo "$tmp/$2"
}

# ---------------------------------------------------------------------------
# YAML

mapfile -t yaml_files < <(find "$DEPLOY" \( -name '*.yml' -o -name '*.yaml' \) -type f | sort)
check "YAML parses: ${yaml_files[*]#"$REPO_ROOT"/}" "${PY[@]}" yaml "${yaml_files[@]}"
printf 'a: [1, 2\nb: c\n' >"$tmp/bad.yaml"
rejects "YAML check rejects a broken file" "${PY[@]}" yaml "$tmp/bad.yaml"

# ---------------------------------------------------------------------------
# Kubernetes

k8s_schema() {
    command -v kubernetes-validate >/dev/null || {
        echo "kubernetes-validate not installed (pip install kubernetes-validate)"
        return $SKIP
    }
    local file=$1 version
    for version in 1.28.0 ""; do
        kubernetes-validate --strict --quiet ${version:+-k "$version"} "$file" || return 1
    done
}
check "k8s: schema-valid (kubernetes-validate --strict, 1.28 and latest)" k8s_schema "$K8S"
rejects "k8s schema check rejects an unknown field" k8s_schema \
    "$(broken "$K8S" typo.yaml 's.replace("readinessProbe:", "readinessProbes:", 1)')"
check "k8s: 3 members, stable DNS peers, ids from ordinals, probes, PDB" "${PY[@]}" k8s "$K8S"
rejects "k8s check rejects a 0-based node id" "${PY[@]}" k8s \
    "$(broken "$K8S" id0.yaml 's.replace("value: \"1$(POD_INDEX)\"", "value: \"$(POD_INDEX)\"", 1)')"
rejects "k8s check rejects OrderedReady start-up" "${PY[@]}" k8s \
    "$(broken "$K8S" ordered.yaml 's.replace("podManagementPolicy: Parallel", "podManagementPolicy: OrderedReady", 1)')"

# ---------------------------------------------------------------------------
# docker compose

compose_config() {
    command -v docker-compose >/dev/null || {
        echo "docker-compose not installed"
        return $SKIP
    }
    # `config` only reads the file: no engine needed.
    docker-compose --project-name berth-manifest-check --file "$1" config --quiet
}
check "compose: docker-compose config" compose_config "$COMPOSE"
rejects "compose config rejects a bad key" compose_config \
    "$(broken "$COMPOSE" badkey.yml 's.replace("restart: unless-stopped", "restarts: unless-stopped", 1)')"
check "compose: berth-1..3, initial cluster by name, volumes, loopback ports, healthcheck" \
    "${PY[@]}" compose "$COMPOSE"
rejects "compose check rejects a port published on all addresses" "${PY[@]}" compose \
    "$(broken "$COMPOSE" public.yml 's.replace("${BERTH_PUBLISH_ADDR:-127.0.0.1}:${BERTH_PORT_2-7072}", "7072", 1)')"

# ---------------------------------------------------------------------------
# systemd

unit_verify() {
    command -v systemd-analyze >/dev/null || {
        echo "systemd-analyze not installed"
        return $SKIP
    }
    # verify insists that ExecStart= exists: point it at a stand-in.
    local dir
    dir=$(mktemp -d "$tmp/unit.XXXXXX")
    printf '#!/bin/sh\nexit 0\n' >"$dir/berth"
    chmod +x "$dir/berth"
    sed "s#^ExecStart=/usr/local/bin/berth #ExecStart=$dir/berth #" "$1" >"$dir/berth.service"
    # verify exits 0 on some warnings; fail on any output about this unit.
    systemd-analyze verify "$dir/berth.service" >"$dir/out" 2>&1 || {
        cat "$dir/out"
        return 1
    }
    if grep -F 'berth.service' "$dir/out"; then return 1; fi
}
check "systemd: systemd-analyze verify berth.service" unit_verify "$UNIT"
rejects "systemd verify rejects an unknown directive" unit_verify \
    "$(broken "$UNIT" berth.service 's.replace("ProtectHome=yes", "ProtectHomes=yes", 1)')"

env_keys() {
    local bin=${BERTH_BIN:-}
    if [[ -z $bin ]]; then
        for bin in "$REPO_ROOT/target/release/berth" "$REPO_ROOT/target/debug/berth" ""; do
            [[ -x $bin ]] && break
        done
    fi
    [[ -n $bin && -x $bin ]] || {
        echo "no berth binary (build it, or set BERTH_BIN)"
        return $SKIP
    }
    "$bin" serve --help >"$tmp/serve-help"
    "${PY[@]}" env "$1" "$tmp/serve-help"
}
check "systemd: berth.env sets only berth serve variables" env_keys "$ENVFILE"
rejects "env check rejects a misspelled variable" env_keys \
    "$(broken "$ENVFILE" berth.env 's.replace("BERTH_ADVERTISE=", "BERTH_ADVERTISED=", 1)')"

# ---------------------------------------------------------------------------
# Scripts

mapfile -t scripts < <(find "$DEPLOY" "$SCRIPT_DIR" -name '*.sh' -type f | sort)
check "scripts parse (bash -n): ${scripts[*]#"$REPO_ROOT"/}" bash -c 'for f; do bash -n "$f" || exit 1; done' _ "${scripts[@]}"
shellcheck_all() {
    command -v shellcheck >/dev/null || {
        echo "shellcheck not installed"
        return $SKIP
    }
    shellcheck --severity=warning "$@"
}
check "shellcheck" shellcheck_all "${scripts[@]}"

echo "$PASSED passed, $FAILED failed, $SKIPPED skipped"
((FAILED == 0))
