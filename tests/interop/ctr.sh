#!/usr/bin/env bash
# ctr interop test: drives containerd's own client, ctr 1.6.20 (Debian's
# `containerd` package, /usr/bin/ctr), against berth over berth's unix socket,
# and checks what ctr prints at every step (spec: containers-api.md §9).
#
# Usage: tests/interop/ctr.sh
#   BERTH_BIN    berth binary [default: <repo>/target/debug/berth]; nothing is built
#   CTR          ctr binary [default: ctr from PATH]
#   STEP_TIMEOUT seconds any one ctr call may take [default: 20]
#   KEEP_LOGS    if set and the run fails, keep the temp dir (node logs) for inspection
#
# Starts one single-node berth and one 3-node cluster in a temporary
# directory; an EXIT trap kills exactly those processes (and any `ctr events`
# it started) and removes the directory. Prints one line per step and ends
# with `N passed, M failed`; exits non-zero if any step failed.
set -euo pipefail
# shellcheck source=tests/lib/steps.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib/steps.sh"
shopt -s inherit_errexit

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)
BERTH_BIN=${BERTH_BIN:-$REPO_ROOT/target/debug/berth}
CTR=${CTR:-ctr}
STEP_TIMEOUT=${STEP_TIMEOUT:-20}
READY_TIMEOUT=20    # seconds for a node to serve `ctr version`
CLUSTER_TIMEOUT=30  # seconds for the cluster to elect a leader

die() {
    echo "ctr.sh: $*" >&2
    exit 2
}

case $BERTH_BIN in
    /*) ;;
    *) BERTH_BIN=$PWD/$BERTH_BIN ;;
esac
[[ -x $BERTH_BIN ]] || die "berth binary $BERTH_BIN not found or not executable (build it first, or set BERTH_BIN)"
command -v "$CTR" >/dev/null || die "ctr ($CTR) not found; install it with: apt-get install -y containerd"
command -v timeout >/dev/null || die "timeout (coreutils) not found"

# ---------------------------------------------------------------------------
# Processes and cleanup

tmp=$(mktemp -d "${TMPDIR:-/tmp}/berth-ctr.XXXXXX")
PIDFILE=$tmp/pids # "PID NAME" per background process this script started
: >"$PIDFILE"

# Kills one process this script started (TERM, then KILL after 5 s) if it
# is still the process we started, and forgets it.
kill_started() {
    local pid=$1 i
    if kill -0 "$pid" 2>/dev/null && grep -qaE 'berth|ctr' "/proc/$pid/cmdline" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    if [[ -f $PIDFILE ]]; then
        grep -v "^$pid " "$PIDFILE" >"$PIDFILE.new" || true
        mv "$PIDFILE.new" "$PIDFILE"
    fi
}

cleanup() {
    local rc=$? pid name
    set +e
    trap - EXIT INT TERM
    if [[ -f $PIDFILE ]]; then
        local -a entries=()
        mapfile -t entries <"$PIDFILE"
        # Signal all of them first, then wait for each (KILL after 5 s).
        for pid in "${entries[@]%% *}"; do
            if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null && grep -qaE 'berth|ctr' "/proc/$pid/cmdline" 2>/dev/null; then
                kill -TERM "$pid" 2>/dev/null
            fi
        done
        for pid in "${entries[@]%% *}"; do
            [[ -n $pid ]] && kill_started "$pid"
        done
    fi
    if ((rc != 0)) && [[ -n ${KEEP_LOGS:-} ]]; then
        echo "ctr.sh: keeping $tmp" >&2
    else
        rm -rf "$tmp"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'echo "ctr.sh: interrupted" >&2; exit 130' INT
trap 'echo "ctr.sh: terminated" >&2; exit 143' TERM

# Records a background process for the trap.
started() { echo "$1 $2" >>"$PIDFILE"; }

# Sets PORT to a TCP port nothing listens on now and not handed out before
# (not a command substitution: USED_PORTS must persist). Ports come from
# below the kernel's ephemeral range: a node dialing a peer that has not
# bound yet can otherwise land its own outgoing connection on that port
# (a TCP self-connect) and keep the peer from binding.
USED_PORTS=" "
EPHEMERAL_LOW=$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
free_port() {
    local i
    for ((i = 0; i < 200; i++)); do
        PORT=$((10000 + RANDOM % (EPHEMERAL_LOW - 10000)))
        [[ $USED_PORTS == *" $PORT "* ]] && continue
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
            USED_PORTS+="$PORT "
            return 0
        fi
    done
    die "no free TCP port found"
}

# start_node NAME DATA_DIR PORT [serve flags...]: starts `berth serve` in the
# background; sets STARTED_PID.
start_node() {
    local name=$1 dir=$2 port=$3
    shift 3
    mkdir -p "$dir"
    "$BERTH_BIN" serve --data-dir "$dir" --listen "127.0.0.1:$port" "$@" >"$tmp/$name.log" 2>&1 &
    STARTED_PID=$!
    started "$STARTED_PID" "$name"
}

# ---------------------------------------------------------------------------
# Steps: each runs in a subshell; a check that fails ends the step with a
# message naming the step and what was wrong.




# c SOCKET ARGS...: runs `ctr -a SOCKET ARGS...` with a time bound; sets OUT,
# ERR (stderr without ctr's version-mismatch warnings), RC and CMD.
c() {
    local sock=$1
    shift
    CMD="ctr -a $sock $*"
    RC=0
    timeout "$STEP_TIMEOUT" "$CTR" -a "$sock" "$@" >"$tmp/out" 2>"$tmp/err" || RC=$?
    OUT=$(cat "$tmp/out")
    ERR=$(grep -v -e '^WARNING: version mismatch$' -e '^WARNING: revision mismatch$' "$tmp/err" || true)
    if ((RC == 124)); then
        fail "\`$CMD\` timed out after ${STEP_TIMEOUT}s"
    fi
}

# ok SOCKET ARGS...: ctr must succeed.
ok() {
    c "$@"
    ((RC == 0)) || fail "\`$CMD\` exited $RC; stderr: $ERR"
}

# bad PATTERN SOCKET ARGS...: ctr must fail, with stderr matching the
# extended regex PATTERN.
bad() {
    local pattern=$1
    shift
    c "$@"
    ((RC != 0)) || fail "\`$CMD\` succeeded, expected a failure matching /$pattern/; stdout: $OUT"
    grep -qE -- "$pattern" <<<"$ERR" || fail "\`$CMD\` failed as expected, but stderr does not match /$pattern/: $ERR"
}

# same WHAT ACTUAL EXPECTED
same() {
    [[ $2 == "$3" ]] || fail "$1: expected [$3], got [$2]"
}

# has WHAT TEXT ERE: TEXT has a line matching ERE.
has() {
    grep -qE -- "$3" <<<"$2" || fail "$1: no line matches /$3/ in:
$2"
}

# ids SOCKET [ctr args before filters] -- [filters]: `c ls -q` as one
# space-separated line.
ids() {
    local sock=$1
    shift
    ok "$sock" "$@"
    tr '\n' ' ' <<<"$OUT" | sed 's/ *$//'
}

# expect_ids SOCKET "ID ID ..." [ctr args]: `ctr [args] c ls -q` lists
# exactly these ids, in this order.
expect_ids() {
    local sock=$1 expected=$2 got
    shift 2
    got=$(ids "$sock" "$@")
    same "\`ctr -a $sock $*\`" "$got" "$expected"
}

# wait_for SECONDS FILE ERE: waits until FILE has a line matching ERE.
wait_for() {
    local deadline=$((SECONDS + $1))
    until grep -qE -- "$3" "$2" 2>/dev/null; do
        ((SECONDS < deadline)) || return 1
        sleep 0.1
    done
}

# JSON object block `"Key": {...}` from `ctr c info` output (pretty-printed
# with 4-space indents): the lines inside it.
info_block() {
    awk -v key="$1" '
        $0 ~ "^    \"" key "\": \\{$" { inside = 1; next }
        inside && /^    [}]/ { exit }
        inside { print }
    ' <<<"$2"
}

# ---------------------------------------------------------------------------
# Fixtures and servers

SPEC=$tmp/spec.json
echo '{"ociVersion":"1.0.2","process":{"args":["sh"]}}' >"$SPEC"
RUNC=io.containerd.runc.v2
RUNSC=io.containerd.runsc.v1
UUID_RE='[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}'

echo "berth: $BERTH_BIN"
echo "ctr:   $(command -v "$CTR") ($("$CTR" --version 2>&1 || true))"

SOCK=$tmp/node/berth.sock
free_port
start_node single "$tmp/node" "$PORT"
SINGLE_PID=$STARTED_PID

declare -a CL_PORTS CL_SOCK CL_PID
for n in 1 2 3; do
    free_port
    CL_PORTS[n]=$PORT
done
INITIAL="1=127.0.0.1:${CL_PORTS[1]},2=127.0.0.1:${CL_PORTS[2]},3=127.0.0.1:${CL_PORTS[3]}"
for n in 1 2 3; do
    CL_SOCK[n]=$tmp/n$n/berth.sock
    start_node "node$n" "$tmp/n$n" "${CL_PORTS[n]}" --node-id "$n" --initial-cluster "$INITIAL"
    CL_PID[n]=$STARTED_PID
done

# wait_ready NAME PID SOCKET: the socket exists and `ctr version` answers.
wait_ready() {
    local name=$1 pid=$2 sock=$3 deadline=$((SECONDS + READY_TIMEOUT))
    while :; do
        if ! kill -0 "$pid" 2>/dev/null; then
            fail "berth $name (pid $pid) exited; log:
$(tail -n 20 "$tmp/$name.log")"
        fi
        if [[ -S $sock ]] && timeout 5 "$CTR" -a "$sock" --connect-timeout 2s version >/dev/null 2>&1; then
            return 0
        fi
        ((SECONDS < deadline)) || fail "berth $name not ready after ${READY_TIMEOUT}s (socket $sock); log:
$(tail -n 20 "$tmp/$name.log")"
        sleep 0.2
    done
}

# ---------------------------------------------------------------------------
# Single node

t_start() {
    wait_ready single "$SINGLE_PID" "$SOCK"
}

t_version() {
    ok "$SOCK" version
    local server
    server=$(sed -n '/^Server:/,$p' <<<"$OUT")
    [[ -n $server ]] || fail "no Server: section in: $OUT"
    has "server version" "$server" '^  Version: +berth [0-9]+\.[0-9]+\.[0-9]+'
    # ... and exactly the version the binary reports (`berth --version`).
    local own
    own=$("$BERTH_BIN" --version)
    same "server version line" "$(grep -m1 '^  Version:' <<<"$server")" "  Version:  $own"
    has "server revision" "$server" '^  Revision: +[^ ]+'
    has "server UUID" "$server" "^  UUID: +$UUID_RE\$"
    has "client version" "$OUT" '^  Version: +1\.6\.'
}

t_create() {
    ok "$SOCK" c create --config "$SPEC" c1
    same "stdout of \`$CMD\`" "$OUT" ""
    ok "$SOCK" c create --config "$SPEC" --label env=prod c2
    same "stdout of \`$CMD\`" "$OUT" ""
    ok "$SOCK" c create --config "$SPEC" --runtime "$RUNSC" --label env=dev --label app.name=web c3
    same "stdout of \`$CMD\`" "$OUT" ""
    expect_ids "$SOCK" "c1 c2 c3" c ls -q
}

t_create_exists() {
    bad '^ctr: container "c1": already exists$' "$SOCK" c create --config "$SPEC" c1
    bad 'already exists$' "$SOCK" c create --config "$SPEC" --label x=y c2
    expect_ids "$SOCK" "c1 c2 c3" c ls -q
}

t_create_invalid() {
    local long
    long=$(printf 'a%.0s' {1..77})
    bad '^ctr: .*identifier "a\.\.b" must match .*: invalid argument$' "$SOCK" c create --config "$SPEC" a..b
    bad '^ctr: .*identifier "-a" must match .*: invalid argument$' "$SOCK" c create --config "$SPEC" -- -a
    bad "^ctr: .*identifier \"$long\" greater than maximum length \\(76 characters\\): invalid argument\$" \
        "$SOCK" c create --config "$SPEC" "$long"
    expect_ids "$SOCK" "c1 c2 c3" c ls -q
}

t_ls() {
    ok "$SOCK" c ls
    local header rows
    header=$(head -n 1 <<<"$OUT" | sed 's/ *$//')
    has "\`$CMD\` header" "$header" '^CONTAINER +IMAGE +RUNTIME$'
    rows=$(tail -n +2 <<<"$OUT" | awk '{ print $1, $2, $3, NF }')
    same "\`$CMD\` rows (id image runtime #columns)" "$rows" "c1 - $RUNC 3
c2 - $RUNC 3
c3 - $RUNSC 3"
}

t_ls_q() {
    ok "$SOCK" c ls -q
    same "\`$CMD\`" "$OUT" "c1
c2
c3"
}

t_ls_filters() {
    expect_ids "$SOCK" "c2" c ls -q labels.env==prod
    expect_ids "$SOCK" "c2 c3" c ls -q labels.env
    expect_ids "$SOCK" "c1 c3" c ls -q labels.env!=prod
    expect_ids "$SOCK" "c1 c2" c ls -q 'id~=^c[12]$'
    expect_ids "$SOCK" "c1 c2" c ls -q "runtime.name==$RUNC"
    expect_ids "$SOCK" "c3" c ls -q 'runtime.name~=runsc'
    expect_ids "$SOCK" "c3" c ls -q labels.app.name==web
    expect_ids "$SOCK" "c3" c ls -q 'labels.env==dev,labels.app.name==web'
    expect_ids "$SOCK" "" c ls -q 'labels.env==prod,labels.app.name==web'
    expect_ids "$SOCK" "c1 c3" c ls -q id==c1 id==c3 # several filters: OR
    expect_ids "$SOCK" "" c ls -q ID==c1              # field names are case-sensitive
    expect_ids "$SOCK" "" c ls -q image
    # The table form honours the filter too.
    ok "$SOCK" c ls labels.env==prod
    same "\`$CMD\` ids" "$(tail -n +2 <<<"$OUT" | awk '{ print $1 }')" "c2"
}

t_ls_bad_filter() {
    bad '^ctr: filters: parse error: \[id==\]: [^:]+: invalid argument(: invalid argument)?$' "$SOCK" c ls id==
    bad '^ctr: filters: parse error: .*: invalid argument' "$SOCK" c ls -q 'id=c1'
}

t_info() {
    ok "$SOCK" c info c3
    has "\`$CMD\` id" "$OUT" '^    "ID": "c3",$'
    has "\`$CMD\` image" "$OUT" '^    "Image": "",$'
    same "\`$CMD\` labels" "$(info_block Labels "$OUT")" '        "app.name": "web",
        "env": "dev"'
    has "\`$CMD\` runtime name" "$(info_block Runtime "$OUT")" "^        \"Name\": \"$RUNSC\",?\$"
    has "\`$CMD\` created_at" "$OUT" '^    "CreatedAt": "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z",$'
    local spec
    spec=$(info_block Spec "$OUT")
    has "\`$CMD\` decoded spec" "$spec" '^        "ociVersion": "1\.0\.2",$'
    has "\`$CMD\` decoded spec" "$spec" '^                "sh"$'
    ok "$SOCK" c info c1
    has "\`$CMD\` id" "$OUT" '^    "ID": "c1",$'
    has "\`$CMD\` labels" "$OUT" '^    "Labels": (null|\{\}),$'
    has "\`$CMD\` runtime" "$(info_block Runtime "$OUT")" "^        \"Name\": \"$RUNC\",\$"
    has "\`$CMD\` runtime options" "$(info_block Runtime "$OUT")" '"type_url": "containerd\.runc\.v1\.Options"'
    bad '^ctr: container "nope" in namespace "default": not found$' "$SOCK" c info nope
}

t_label() {
    ok "$SOCK" c label c2 k=v k2=x
    same "\`$CMD\` (sorted)" "$(tr ',' '\n' <<<"$OUT" | LC_ALL=C sort -t= -k1,1 | paste -sd, -)" "env=prod,k=v,k2=x"
    ok "$SOCK" c label c2 k=v2 k2= k3
    same "\`$CMD\` (sorted)" "$(tr ',' '\n' <<<"$OUT" | LC_ALL=C sort -t= -k1,1 | paste -sd, -)" "env=prod,k=v2,k3=true"
    ok "$SOCK" c info c2
    same "\`$CMD\` labels after c label" "$(info_block Labels "$OUT")" '        "env": "prod",
        "k": "v2",
        "k3": "true"'
    bad 'not found$' "$SOCK" c label nope a=b
}

t_namespaces() {
    ok "$SOCK" -n other c create --config "$SPEC" --label ns=other o1
    ok "$SOCK" -n other c create --config "$SPEC" c2 # same id as in default: ids are per namespace
    expect_ids "$SOCK" "c2 o1" -n other c ls -q
    expect_ids "$SOCK" "c1 c2 c3" c ls -q
    expect_ids "$SOCK" "c1 c2 c3" -n default c ls -q
    expect_ids "$SOCK" "" -n empty c ls -q
    bad '^ctr: container "o1" in namespace "default": not found$' "$SOCK" c info o1
    ok "$SOCK" -n other c info c2
    has "\`$CMD\` labels (the other namespace's c2 has none)" "$OUT" '^    "Labels": (null|\{\}),$'
    bad '^ctr: .*namespace validation: identifier "bad\.\.ns" must match .*: invalid argument$' "$SOCK" -n bad..ns c ls
    ok "$SOCK" -n other c rm o1 c2
    expect_ids "$SOCK" "" -n other c ls -q
    expect_ids "$SOCK" "c1 c2 c3" c ls -q
}

# Event lines are `<date> <time> <zone> UTC <namespace> <topic> <event JSON>`.
event_lines() { # FILE ID: "namespace topic" of the events about ID
    awk -v id="$2" 'index($0, "{\"id\":\"" id "\"") { print $5, $6 }' "$1"
}

t_events() {
    local all=$tmp/events.all filtered=$tmp/events.filtered pid_all pid_filtered
    : >"$all"
    : >"$filtered"
    "$CTR" -a "$SOCK" events >"$all" 2>&1 &
    pid_all=$!
    started "$pid_all" events
    "$CTR" -a "$SOCK" events 'namespace==other' >"$filtered" 2>&1 &
    pid_filtered=$!
    started "$pid_filtered" events
    # Subscriptions are live only: create probes until both subscribers have
    # seen one, so that they are known to be subscribed.
    local deadline=$((SECONDS + STEP_TIMEOUT)) i=0
    until grep -q '/containers/create {"id":"probe' "$all" && grep -q '/containers/create {"id":"probe' "$filtered"; do
        ((SECONDS < deadline)) || fail "\`ctr events\` saw no probe event in ${STEP_TIMEOUT}s; output: $(cat "$all")"
        i=$((i + 1))
        ok "$SOCK" -n other c create --config "$SPEC" "probe$i"
        sleep 0.3
    done
    ok "$SOCK" c create --config "$SPEC" --label a=1 ev1
    ok "$SOCK" c label ev1 b=2
    ok "$SOCK" c rm ev1
    ok "$SOCK" -n other c create --config "$SPEC" ev2
    wait_for "$STEP_TIMEOUT" "$all" '/containers/create \{"id":"ev2"' ||
        fail "\`ctr events\` output lacks the events in ${STEP_TIMEOUT}s: $(cat "$all")"
    wait_for "$STEP_TIMEOUT" "$filtered" '/containers/create \{"id":"ev2"' ||
        fail "\`ctr events namespace==other\` lacks ev2's event in ${STEP_TIMEOUT}s: $(cat "$filtered")"
    kill_started "$pid_all"
    kill_started "$pid_filtered"
    same "\`ctr events\`: events of ev1 (namespace topic)" "$(event_lines "$all" ev1)" "default /containers/create
default /containers/update
default /containers/delete"
    has "\`ctr events\` line format" "$(cat "$all")" \
        '^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9:.]+ \+0000 UTC default /containers/create \{"id":"ev1","runtime":\{"name":"io\.containerd\.runc\.v2"'
    has "\`ctr events\` update payload" "$(cat "$all")" \
        ' default /containers/update \{"id":"ev1","labels":\{"a":"1","b":"2"\}\}$'
    has "\`ctr events\` delete payload" "$(cat "$all")" ' default /containers/delete \{"id":"ev1"\}$'
    same "\`ctr events\`: events of ev2" "$(event_lines "$all" ev2)" "other /containers/create"
    expect_ids "$SOCK" "c1 c2 c3" c ls -q
}

# What the filtered subscriber of t_events received.
t_events_filter() {
    local filtered=$tmp/events.filtered
    [[ -s $filtered ]] || fail "\`ctr events namespace==other\` received nothing"
    same "\`ctr events namespace==other\`: events of ev1 (namespace default)" "$(event_lines "$filtered" ev1)" ""
    same "\`ctr events namespace==other\`: events of ev2" "$(event_lines "$filtered" ev2)" "other /containers/create"
    same "\`ctr events namespace==other\`: namespaces seen" "$(awk '{ print $5 }' "$filtered" | sort -u)" "other"
    bad 'failed parsing subscription filters: filters: parse error' "$SOCK" events 'id=='
}

t_rm() {
    ok "$SOCK" c rm c1
    same "stdout of \`$CMD\`" "$OUT" ""
    expect_ids "$SOCK" "c2 c3" c ls -q
    bad '^ctr: container "c1" in namespace "default": not found$' "$SOCK" c rm c1
    bad 'not found$' "$SOCK" c info c1
    ok "$SOCK" c rm c2 c3
    expect_ids "$SOCK" "" c ls -q
    ok "$SOCK" c ls
    same "\`$CMD\` on an empty namespace" "$(sed 's/ *$//' <<<"$OUT")" "$(printf 'CONTAINER    IMAGE    RUNTIME')"
}

# ---------------------------------------------------------------------------
# Three-node cluster

t_cluster_start() {
    local n deadline=$((SECONDS + CLUSTER_TIMEOUT))
    for n in 1 2 3; do wait_ready "node$n" "${CL_PID[n]}" "${CL_SOCK[n]}"; done
    # A linearizable read needs a leader on every node.
    for n in 1 2 3; do
        until timeout 5 "$CTR" -a "${CL_SOCK[n]}" c ls -q >/dev/null 2>&1; do
            ((SECONDS < deadline)) || fail "node $n cannot serve \`ctr c ls\` after ${CLUSTER_TIMEOUT}s (no leader?); log:
$(tail -n 20 "$tmp/node$n.log")"
            sleep 0.2
        done
    done
}

t_cluster_create() {
    ok "${CL_SOCK[2]}" c create --config "$SPEC" --label where=node2 x1
    expect_ids "${CL_SOCK[1]}" "x1" c ls -q
    expect_ids "${CL_SOCK[3]}" "x1" c ls -q
    expect_ids "${CL_SOCK[2]}" "x1" c ls -q
    ok "${CL_SOCK[1]}" c info x1
    same "\`$CMD\` labels" "$(info_block Labels "$OUT")" '        "where": "node2"'
    bad 'already exists$' "${CL_SOCK[3]}" c create --config "$SPEC" x1
}

t_cluster_filter() {
    expect_ids "${CL_SOCK[3]}" "x1" c ls -q labels.where==node2
    expect_ids "${CL_SOCK[1]}" "" c ls -q labels.where==node1
}

t_cluster_label() {
    ok "${CL_SOCK[1]}" c label x1 by=node1
    same "\`$CMD\` (sorted)" "$(tr ',' '\n' <<<"$OUT" | LC_ALL=C sort -t= -k1,1 | paste -sd, -)" "by=node1,where=node2"
    ok "${CL_SOCK[3]}" c info x1
    same "\`$CMD\` labels" "$(info_block Labels "$OUT")" '        "by": "node1",
        "where": "node2"'
}

t_cluster_rm() {
    ok "${CL_SOCK[3]}" c rm x1
    local n
    for n in 1 2 3; do expect_ids "${CL_SOCK[n]}" "" c ls -q; done
    bad 'not found$' "${CL_SOCK[1]}" c info x1
    bad 'not found$' "${CL_SOCK[2]}" c rm x1
}

# ---------------------------------------------------------------------------

step "single node: berth serve is up, ctr version answers" t_start
if ((FAILED > 0)); then
    echo "$PASSED passed, $FAILED failed"
    exit 1
fi
step "ctr version: server is berth, with a UUID" t_version
step "ctr c create --config [--label] [--runtime]" t_create
step "ctr c create of an existing id: already exists" t_create_exists
step "ctr c create of an invalid id: invalid argument" t_create_invalid
step "ctr c ls" t_ls
step "ctr c ls -q" t_ls_q
step "ctr c ls with filters" t_ls_filters
step "ctr c ls with a malformed filter: parse error" t_ls_bad_filter
step "ctr c info" t_info
step "ctr c label k=v k2= k3" t_label
step "ctr -n: namespace isolation" t_namespaces
step "ctr events: create, update, delete in order" t_events
step "ctr events with a filter (namespace==other)" t_events_filter
step "ctr c rm" t_rm
step "cluster: 3 nodes up, leader elected" t_cluster_start
step "cluster: create via node 2, listed via nodes 1 and 3" t_cluster_create
step "cluster: c ls with a filter via nodes 3 and 1" t_cluster_filter
step "cluster: label via node 1, seen via node 3" t_cluster_label
step "cluster: rm via node 3 removes it everywhere" t_cluster_rm

echo "$PASSED passed, $FAILED failed"
if ((FAILED > 0)); then
    printf 'failed: %s\n' "${FAILED_STEPS[@]}" >&2
    exit 1
fi
