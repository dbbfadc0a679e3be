#!/usr/bin/env bash
# The deployment test: a three-node berth cluster from deploy/compose, in
# real containers of the berth image on their own private bridge network,
# through node loss, partitions and membership changes.
#
#   1. compose up: all three healthy; a container created through node 2 is
#      listed by ctr through node 3's socket and by berth through node 1 (TCP).
#   2. docker kill the leader: a new leader, writes go on through the other
#      two; docker start it: it catches up. kill -9 a node's process (a
#      crash, not a stop): its restart policy brings it back.
#   3. docker network disconnect a follower: the other two serve writes; the
#      cut-off node fails linearizable reads with UNAVAILABLE (never stale
#      data; the client reaches it through its unix socket, outside the
#      partition); reconnect it: it catches up with identical data.
#   4. Partition the leader away: the majority elects and serves; the old
#      leader acknowledges no write; heal: all three agree, no acknowledged
#      write is lost.
#   5. Grow to four nodes (a `berth serve --join` container and
#      `berth cluster add-node`), then remove the fourth.
#   6. Remove a member, wipe its data, re-add it with fresh data (--join).
#
# Usage: tests/deploy/docker-cluster.sh
#   BERTH_IMAGE   image under test [default: berth:<version from Cargo.toml>,
#                 built with deploy/image/build.sh if missing; an existing one
#                 is used as it is: rebuild it after changing the code]
#   CTR           ctr binary [default: ctr from PATH; without it the ctr check
#                 uses berth on the same socket]
#   STEP_TIMEOUT  seconds one docker or client call may take [default: 40]
#   WAIT_TIMEOUT  seconds a cluster state may take to be reached [default: 60]
#   TOTAL_TIMEOUT seconds for the whole run, then it is aborted [default: 1200]
#   KEEP_LOGS     if set and a step failed, keep the temp dir with node logs
#
# Prints "SKIP: …" and exits 0 when no Docker engine (or no docker-compose)
# is reachable. Everything it creates carries a unique compose project name
# (berthdt<pid><random>); an EXIT trap removes those containers, networks and
# volumes, also on failure or interruption. Client calls run the berth
# binary copied out of the image, on the host. Ends with `N passed, M failed`;
# exits 1 if any step failed.
set -euo pipefail
# shellcheck source=tests/lib/steps.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib/steps.sh"
# After a failed step, put the cluster back the way the next step expects it.
on_step_failure() { restore; }
shopt -s inherit_errexit

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)
COMPOSE_FILE=$REPO_ROOT/deploy/compose/docker-compose.yml
STEP_TIMEOUT=${STEP_TIMEOUT:-40}
WAIT_TIMEOUT=${WAIT_TIMEOUT:-60}
TOTAL_TIMEOUT=${TOTAL_TIMEOUT:-1200}
CALL_TIMEOUT=10 # berth --timeout: seconds the server may take for one call
CTR=${CTR:-ctr}
BERTH_UID=10001

# The client must not pick up settings from the caller's environment.
unset BERTH_ENDPOINTS BERTH_NAMESPACE BERTH_OUTPUT BERTH_CONSISTENCY BERTH_TIMEOUT

die() {
    echo "docker-cluster.sh: $*" >&2
    exit 2
}
skip() {
    echo "SKIP: docker-cluster.sh: $*"
    exit 0
}

# ---------------------------------------------------------------------------
# Is there an engine?

command -v docker >/dev/null || skip "no docker client installed"
if ! docker_info=$(timeout 20 docker info --format '{{.ServerVersion}}' 2>&1); then
    skip "no Docker engine reachable ($(grep -m 1 . <<<"$docker_info"))"
fi
command -v docker-compose >/dev/null || skip "docker-compose (compose v1) is not installed"
command -v python3 >/dev/null || die "python3 is needed (JSON parsing)"

version=$(awk '
    /^\[/ { in_package = ($0 == "[package]") }
    in_package && /^version *=/ { gsub(/.*= *"|".*/, ""); print; exit }
' "$REPO_ROOT/Cargo.toml")
IMAGE=${BERTH_IMAGE:-berth:$version}
if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
    [[ -z ${BERTH_IMAGE:-} ]] || die "image $IMAGE not found"
    echo "image $IMAGE not found: building it with deploy/image/build.sh"
    "$REPO_ROOT/deploy/image/build.sh" || die "building $IMAGE failed"
fi

# ---------------------------------------------------------------------------
# What this run owns, and cleanup

PROJECT=berthdt$$$RANDOM
TEST_LABEL=berth.deploy-test=$PROJECT # on every container started outside compose
tmp=$(mktemp -d "${TMPDIR:-/tmp}/berth-docker.XXXXXX")
RUN=$tmp/run # socket dirs, bind-mounted to /run/berth
CLI=$tmp/berth
ACKED=$tmp/acked # one id per acknowledged create
: >"$ACKED"
WATCHDOG=""


compose() {
    BERTH_IMAGE=$IMAGE BERTH_RUN_DIR=$RUN BERTH_PUBLISH_ADDR=127.0.0.1 \
        BERTH_PORT_1="" BERTH_PORT_2="" BERTH_PORT_3="" BERTH_LOG=info \
        timeout "$STEP_TIMEOUT" docker-compose --ansi never -p "$PROJECT" -f "$COMPOSE_FILE" "$@"
}

cleanup() {
    local rc=$? c n v
    set +e
    trap - EXIT INT TERM
    [[ -n $WATCHDOG ]] && kill "$WATCHDOG" 2>/dev/null && wait "$WATCHDOG" 2>/dev/null
    if ((rc != 0 || FAILED > 0)); then
        echo "--- last log lines of each node" >&2
        for c in $(docker ps -aq --filter "label=com.docker.compose.project=$PROJECT") \
            $(docker ps -aq --filter "label=$TEST_LABEL"); do
            echo "--- $(docker inspect --format '{{.Name}}' "$c")" >&2
            docker logs --tail 25 "$c" 2>&1 | sed 's/^/    /' >&2
            [[ -n ${KEEP_LOGS:-} ]] && docker logs "$c" >"$tmp/$(docker inspect --format '{{.Name}}' "$c" | tr -d /).log" 2>&1
        done
    fi
    # Containers started outside compose first (they sit on compose's network).
    for c in $(docker ps -aq --filter "label=$TEST_LABEL"); do
        timeout 60 docker rm -f -v "$c" >/dev/null
    done
    compose down --volumes --remove-orphans --timeout 5 >/dev/null 2>&1 ||
        timeout 60 docker-compose -p "$PROJECT" -f "$COMPOSE_FILE" down --volumes --remove-orphans --timeout 5 >/dev/null 2>&1
    # Whatever is left with the project's name (down failed, or volumes made by hand).
    for c in $(docker ps -aq --filter "label=com.docker.compose.project=$PROJECT"); do
        timeout 60 docker rm -f -v "$c" >/dev/null
    done
    for n in $(docker network ls -q --filter "label=com.docker.compose.project=$PROJECT"); do
        timeout 60 docker network rm "$n" >/dev/null
    done
    for v in $(docker volume ls -q --filter "name=^${PROJECT}_"); do
        timeout 60 docker volume rm -f "$v" >/dev/null
    done
    local left
    left=$( (docker ps -aq --filter "label=com.docker.compose.project=$PROJECT"
        docker ps -aq --filter "label=$TEST_LABEL"
        docker network ls -q --filter "name=^${PROJECT}_"
        docker volume ls -q --filter "name=^${PROJECT}_") | wc -l)
    ((left == 0)) || echo "docker-cluster.sh: WARNING: $left docker objects of $PROJECT could not be removed" >&2
    if ((rc != 0 || FAILED > 0)) && [[ -n ${KEEP_LOGS:-} ]]; then
        echo "docker-cluster.sh: keeping $tmp" >&2
    else
        rm -rf "$tmp"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'echo "docker-cluster.sh: interrupted" >&2; exit 130' INT
trap 'echo "docker-cluster.sh: aborted (terminated, or TOTAL_TIMEOUT=${TOTAL_TIMEOUT}s reached)" >&2; exit 143' TERM

# The whole run is bounded too.
(
    trap 'kill "$sleeper" 2>/dev/null; exit 0' TERM
    sleep "$TOTAL_TIMEOUT" &
    sleeper=$!
    wait "$sleeper" && kill -TERM $$ 2>/dev/null
) &
WATCHDOG=$!

# ---------------------------------------------------------------------------
# Steps (as in tests/interop/ctr.sh): each runs in a subshell; state that
# lasts between steps lives in files ($ACKED) and in Docker itself.



note() {
    echo "    $*"
}

# b ARGS...: runs the berth client with a time bound; sets OUT, ERR, RC, CMD.
b() {
    CMD="berth $*"
    RC=0
    timeout "$STEP_TIMEOUT" "$CLI" --timeout "$CALL_TIMEOUT" "$@" >"$tmp/out" 2>"$tmp/err" || RC=$?
    OUT=$(cat "$tmp/out")
    ERR=$(cat "$tmp/err")
    if ((RC == 124)); then
        ERR="timed out after ${STEP_TIMEOUT}s"
    fi
}

# ok ARGS...: berth must succeed.
ok() {
    b "$@"
    ((RC == 0)) || fail "\`$CMD\` exited $RC: $ERR"
}

# restore: whatever a failed step left behind: every node container that
# exists runs and is on the cluster's network (so later steps start from a
# whole cluster).
restore() {
    local n c net
    net=$(network)
    for n in 1 2 3 4; do
        c=$(cid "$n" 2>/dev/null) || continue
        if [[ $(docker inspect --format '{{.State.Running}}' "$c") != true ]]; then
            echo "    (restore: starting berth-$n)"
            timeout "$STEP_TIMEOUT" docker start "$c" >/dev/null || true
        fi
        if ! docker inspect --format '{{range $k, $v := .NetworkSettings.Networks}}{{$v.NetworkID}} {{end}}' "$c" | grep -q "$net"; then
            echo "    (restore: reconnecting berth-$n)"
            timeout "$STEP_TIMEOUT" docker network connect --alias "berth-$n" "$net" "$c" || true
        fi
    done
}

# Node N's endpoints: its unix socket (from the host) and its published port.
sock() { echo "$RUN/berth-$1/berth.sock"; }
ep() { echo "unix:$(sock "$1")"; }
tcp() {
    local port
    port=$(compose port "berth-$1" 7070) || fail "no published port for berth-$1"
    echo "$port"
}

# cid N: the container of node N (started by compose, or by this script).
cid() {
    local id
    id=$(docker ps -aq --filter "label=$TEST_LABEL" --filter "label=berth.node=$1")
    [[ -n $id ]] || id=$(docker ps -aq --filter "label=com.docker.compose.project=$PROJECT" \
        --filter "label=com.docker.compose.service=berth-$1")
    [[ -n $id ]] || fail "no container for node $1"
    echo "$id"
}

network() {
    docker network ls -q --filter "label=com.docker.compose.project=$PROJECT" --filter "label=com.docker.compose.network=berth"
}

# json EXPR: evaluates a Python expression on the JSON document in $OUT (as j).
json() {
    python3 -c 'import json, sys; j = json.loads(sys.stdin.read()); r = eval(sys.argv[1]); print(r if not isinstance(r, bool) else str(r).lower())' "$1" <<<"$OUT"
}

# ids N [client flags]: sorted ids that node N lists (linearizable by default).
ids() {
    local n=$1
    shift
    ok --endpoints "$(ep "$n")" -o json "$@" containers list
    json '" ".join(sorted(c["id"] for c in j))'
}

acked() { sort "$ACKED" | tr '\n' ' ' | sed 's/ *$//'; }

# create N ID: creates container ID through node N; it is then acknowledged.
create() {
    ok --endpoints "$(ep "$1")" containers create "$2" --image "docker.io/library/busybox:$2" --label "via=node-$1"
    echo "$2" >>"$ACKED"
}

# wait_for SECONDS WHAT CMD...: retries CMD (quietly) until it succeeds.
wait_for() {
    local seconds=$1 what=$2 deadline last=""
    shift 2
    deadline=$((SECONDS + seconds))
    while true; do
        if last=$("$@" 2>&1); then
            return 0
        fi
        ((SECONDS < deadline)) || fail "$what: not reached within ${seconds}s (last: $(tail -n 3 <<<"$last" | tr '\n' ' '))"
        sleep 1
    done
}

# healthy_leader N: node N reports a healthy cluster; prints the leader's id.
healthy_leader() {
    b --endpoints "$(ep "$1")" -o json cluster health
    ((RC == 0)) || {
        echo "node $1: $ERR $OUT"
        return 1
    }
    json 'j["leader_id"]'
}

# leader_among N...: waits until every listed node reports the same healthy
# leader, itself one of them; prints its id.
leader_among() {
    local deadline=$((SECONDS + WAIT_TIMEOUT)) n l leader last=""
    while true; do
        leader=""
        for n in "$@"; do
            if ! l=$(healthy_leader "$n"); then
                last=$l
                leader=""
                break
            fi
            if [[ -n $leader && $l != "$leader" ]]; then
                last="node $n sees leader $l, another node sees $leader"
                leader=""
                break
            fi
            leader=$l
        done
        if [[ -n $leader && " $* " == *" $leader "* ]]; then
            echo "$leader"
            return 0
        fi
        [[ -n $leader ]] && last="the leader $leader is not among nodes $*"
        ((SECONDS < deadline)) || fail "no common healthy leader among nodes $* within ${WAIT_TIMEOUT}s (last: $last)"
        sleep 1
    done
}

# same_as_acked N [flags]: node N lists exactly the acknowledged ids.
same_as_acked() {
    local got want
    got=$(ids "$@") || return 1
    want=$(acked)
    [[ $got == "$want" ]] || {
        echo "node $1 lists [$got], acknowledged: [$want]"
        return 1
    }
}

# converged N...: every node's local (serializable) state equals the
# acknowledged writes, and so do its linearizable reads.
converged() {
    local n
    for n in "$@"; do
        wait_for "$WAIT_TIMEOUT" "node $n caught up (local state = acknowledged writes)" \
            same_as_acked "$n" --consistency serializable
        wait_for "$WAIT_TIMEOUT" "node $n serves linearizable reads of the acknowledged writes" same_as_acked "$n"
    done
}

container_health() {
    docker inspect --format '{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' "$(cid "$1")"
}

docker_healthy() {
    local n s
    for n in "$@"; do
        s=$(container_health "$n")
        [[ $s == healthy ]] || {
            echo "berth-$n is $s"
            return 1
        }
    done
}

# cut_off N / reconnect N: takes node N's container off the network / puts it back
# (with its DNS name: compose gave it the alias berth-N).
cut_off() {
    timeout "$STEP_TIMEOUT" docker network disconnect "$(network)" "$(cid "$1")" || fail "cannot disconnect berth-$1"
}
reconnect() {
    timeout "$STEP_TIMEOUT" docker network connect --alias "berth-$1" "$(network)" "$(cid "$1")" ||
        fail "cannot reconnect berth-$1"
}

# unavailable N [flags]: a linearizable read through node N must fail with
# UNAVAILABLE (and never return data).
unavailable_read() {
    # A client deadline longer than the server's request timeout (10 s), so
    # the answer is the server's, not the client giving up.
    CALL_TIMEOUT=30 b --endpoints "$(ep "$1")" containers list
    ((RC != 0)) || fail "node $1 served a linearizable read while cut off: $OUT"
    grep -q 'Unavailable' <<<"$ERR" || fail "node $1: the read failed, but not with UNAVAILABLE: $ERR"
    note "node $1 (cut off): $(tail -n 1 <<<"$ERR")"
}

# probes_when_cut N: inside cut-off node N, the healthcheck (compose, image)
# fails, while the Kubernetes liveness command (a local read) succeeds: a
# node cut off is unhealthy/unready, but alive, and must not be restarted.
LIVENESS=(/usr/local/bin/berth --endpoints=127.0.0.1:7070 --consistency=serializable --timeout=5
    containers list id==berth-liveness-probe)
probes_when_cut() {
    local c health live
    c=$(cid "$1")
    if health=$(timeout "$STEP_TIMEOUT" docker exec "$c" /usr/local/bin/berth --endpoints 127.0.0.1:7070 --timeout 3 cluster health 2>&1); then
        fail "node $1 is cut off, yet its healthcheck passes: $health"
    fi
    live=$(timeout "$STEP_TIMEOUT" docker exec "$c" "${LIVENESS[@]}" 2>&1) ||
        fail "node $1 is cut off and the liveness command fails: $live"
    note "node $1 (cut off): healthcheck fails ($(head -n 1 <<<"$health" | cut -c1-70)…); liveness command passes"
}

# start_join N DATA_VOLUME: starts node N outside compose, empty, waiting to
# be added (`berth serve --join`), on the cluster's network as berth-N.
start_join() {
    local n=$1
    mkdir -p "$RUN/berth-$n"
    rm -f "$RUN/berth-$n/berth.sock"
    [[ $(id -u) == 0 ]] && chown "$BERTH_UID:$BERTH_UID" "$RUN/berth-$n"
    timeout "$STEP_TIMEOUT" docker run -d \
        --name "${PROJECT}_berth-$n" --label "$TEST_LABEL" --label "berth.node=$n" \
        --network "$(network)" --network-alias "berth-$n" --hostname "berth-$n" \
        --read-only --cap-drop ALL --security-opt no-new-privileges:true \
        -v "${PROJECT}_berth-$n-join:/var/lib/berth" -v "$RUN/berth-$n:/run/berth" \
        -e BERTH_NODE_ID="$n" -e BERTH_ADVERTISE="berth-$n:7070" -e BERTH_JOIN=true \
        "$IMAGE" >/dev/null || fail "cannot start berth-$n with --join"
    wait_for "$WAIT_TIMEOUT" "berth-$n serving on its socket" test -S "$(sock "$n")"
}

# voters N: the member ids node N's cluster status shows, sorted.
members() {
    ok --endpoints "$(ep "$1")" -o json cluster status
    json '" ".join(str(m["id"]) + ("" if m["role"] == "voter" else "(" + m["role"] + ")") for m in sorted(j["members"], key=lambda m: m["id"]))'
}
members_are() {
    local got
    got=$(members "$1") || return 1
    [[ $got == "$2" ]] || {
        echo "members [$got], expected [$2]"
        return 1
    }
}

# ---------------------------------------------------------------------------
# The steps

t_up() {
    local n started=$SECONDS
    mkdir -p "$RUN"/berth-{1,2,3}
    if [[ $(id -u) == 0 ]]; then
        chown "$BERTH_UID:$BERTH_UID" "$RUN"/berth-{1,2,3}
    else
        chmod 0777 "$RUN"/berth-{1,2,3}
    fi
    compose up -d >"$tmp/up.log" 2>&1 || fail "docker-compose up failed: $(cat "$tmp/up.log")"
    wait_for 90 "all three containers healthy" docker_healthy 1 2 3
    note "healthy after $((SECONDS - started))s"
    LEADER=$(leader_among 1 2 3)
    note "leader: node $LEADER; network $(docker network inspect --format '{{.Name}} {{range .IPAM.Config}}{{.Subnet}}{{end}}' "$(network)")"
}

t_create_and_list() {
    create 2 web-1
    local got
    if command -v "$CTR" >/dev/null; then
        got=$(timeout "$STEP_TIMEOUT" "$CTR" --address "$(sock 3)" containers list --quiet 2>"$tmp/ctr.err") ||
            fail "ctr on node 3's socket failed: $(cat "$tmp/ctr.err")"
        [[ $(tr '\n' ' ' <<<"$got" | sed 's/ *$//') == "web-1" ]] || fail "ctr via node 3 lists [$got], expected [web-1]"
        got=$(timeout "$STEP_TIMEOUT" "$CTR" --address "$(sock 3)" containers info web-1 2>/dev/null) ||
            fail "ctr c info web-1 via node 3 failed"
        grep -q '"Image": "docker.io/library/busybox:web-1"' <<<"$got" || fail "ctr c info shows another image: $got"
        note "ctr (node 3's socket): web-1 docker.io/library/busybox:web-1"
    else
        note "ctr not found: listing through node 3's socket with berth instead"
        same_as_acked 3 || fail "node 3 does not list web-1"
    fi
    local port
    port=$(tcp 1)
    ok --endpoints "$port" -o json containers get web-1
    [[ $(json 'j["labels"]["via"]') == node-2 ]] || fail "berth via node 1 ($port): $OUT"
    note "berth via node 1 (TCP $port): web-1 labels via=node-2"
}

t_kill_leader() {
    local old new others n
    old=$(leader_among 1 2 3)
    others=$(printf '%s\n' 1 2 3 | grep -vx "$old" | tr '\n' ' ')
    timeout "$STEP_TIMEOUT" docker kill "$(cid "$old")" >/dev/null || fail "docker kill berth-$old failed"
    # shellcheck disable=SC2086 # $others is a list of ids
    new=$(leader_among $others)
    [[ $new != "$old" ]] || fail "node $old still leads after being killed"
    note "killed leader $old; new leader: node $new"
    for n in $others; do create "$n" "after-kill-via-$n"; done
    # shellcheck disable=SC2086
    converged $others
    timeout "$STEP_TIMEOUT" docker start "$(cid "$old")" >/dev/null || fail "docker start berth-$old failed"
    converged "$old"
    wait_for 60 "berth-$old healthy again" docker_healthy "$old"
    leader_among 1 2 3 >/dev/null
    note "node $old restarted and caught up: $(acked)"
}

# restarted_since C N: container C has restarted more than N times and runs.
restarted_since() {
    local count running
    count=$(docker inspect --format '{{.RestartCount}}' "$1")
    running=$(docker inspect --format '{{.State.Running}}' "$1")
    ((count > $2)) && [[ $running == true ]]
}

t_crash() {
    local leader f c pid restarts
    if [[ $(id -u) != 0 ]]; then
        note "not root: cannot kill berth's process (uid $BERTH_UID) from the host; checking docker restart instead"
    fi
    leader=$(leader_among 1 2 3)
    f=$(printf '%s\n' 1 2 3 | grep -vx "$leader" | tail -n 1)
    c=$(cid "$f")
    restarts=$(docker inspect --format '{{.RestartCount}}' "$c")
    if [[ $(id -u) == 0 ]]; then
        pid=$(docker inspect --format '{{.State.Pid}}' "$c")
        ((pid > 0)) || fail "berth-$f has no process"
        kill -KILL "$pid"
        note "kill -9 of berth-$f's berth process (host pid $pid)"
        wait_for "$WAIT_TIMEOUT" "berth-$f restarted by its restart policy" restarted_since "$c" "$restarts"
    else
        timeout "$STEP_TIMEOUT" docker restart "$c" >/dev/null || fail "docker restart berth-$f failed"
    fi
    create "$leader" "after-crash-of-$f"
    converged "$f"
    wait_for 60 "berth-$f healthy again" docker_healthy "$f"
    note "berth-$f is back (restart count $(docker inspect --format '{{.RestartCount}}' "$c")) and caught up"
}

t_cut_follower() {
    local leader f other
    leader=$(leader_among 1 2 3)
    f=$(printf '%s\n' 1 2 3 | grep -vx "$leader" | head -n 1)
    other=$(printf '%s\n' 1 2 3 | grep -vx "$leader" | grep -vx "$f")
    cut_off "$f"
    note "cut off follower $f (leader $leader)"
    create "$leader" "cut-$f-via-$leader"
    create "$other" "cut-$f-via-$other"
    converged "$leader" "$other"
    unavailable_read "$f"
    probes_when_cut "$f"
    # Its local state is behind: what a linearizable read must never return.
    local stale
    stale=$(ids "$f" --consistency serializable)
    [[ $stale != "$(acked)" ]] || fail "node $f has the writes made while it was cut off?"
    note "node $f local (serializable) state lacks the new writes, as expected"
    reconnect "$f"
    converged "$f"
    leader_among 1 2 3 >/dev/null
    note "node $f reconnected and caught up"
}

t_cut_leader() {
    local old new a b_ n
    old=$(leader_among 1 2 3)
    a=$(printf '%s\n' 1 2 3 | grep -vx "$old" | head -n 1)
    b_=$(printf '%s\n' 1 2 3 | grep -vx "$old" | grep -vx "$a")
    cut_off "$old"
    new=$(leader_among "$a" "$b_")
    note "cut off leader $old; nodes $a and $b_ elected node $new"
    create "$a" "split-via-$a"
    create "$b_" "split-via-$b_"
    # The old leader must not acknowledge a write (it cannot reach a quorum).
    CALL_TIMEOUT=30 b --endpoints "$(ep "$old")" containers create "split-via-old-$old"
    ((RC != 0)) || {
        echo "split-via-old-$old" >>"$ACKED"
        fail "the cut-off old leader $old acknowledged a write"
    }
    note "old leader $old refused the write: $(tail -n 1 <<<"$ERR")"
    unavailable_read "$old"
    probes_when_cut "$old"
    reconnect "$old"
    converged 1 2 3
    leader_among 1 2 3 >/dev/null
    grep -qx "split-via-old-$old" <(ids "$old") && fail "the unacknowledged write appeared after healing"
    note "healed: all three list the $(wc -l <"$ACKED") acknowledged writes, nothing else"
}

t_grow_shrink() {
    local leader
    leader=$(leader_among 1 2 3)
    start_join 4
    ok --endpoints "$(ep 1)" cluster add-node --id 4 --address berth-4:7070 --wait 60
    note "add-node: $(tail -n 1 <<<"$OUT")"
    wait_for "$WAIT_TIMEOUT" "node 4 is a voter" members_are 1 "1 2 3 4"
    converged 4
    create 4 "via-node-4"
    converged 1 2 3 4
    leader_among 1 2 3 4 >/dev/null
    wait_for 60 "berth-4 healthy" docker_healthy 4
    note "four voters; write through node 4 seen everywhere"
    ok --endpoints "$(ep 2)" cluster remove-node --id 4
    note "remove-node: $(tail -n 1 <<<"$OUT")"
    wait_for "$WAIT_TIMEOUT" "node 4 is gone from the membership" members_are 1 "1 2 3"
    timeout "$STEP_TIMEOUT" docker rm -f -v "$(cid 4)" >/dev/null
    timeout "$STEP_TIMEOUT" docker volume rm "${PROJECT}_berth-4-join" >/dev/null
    create 3 "after-shrink"
    converged 1 2 3
    leader_among 1 2 3 >/dev/null
}

t_replace_member() {
    local leader x rest
    leader=$(leader_among 1 2 3)
    x=$(printf '%s\n' 1 2 3 | grep -vx "$leader" | tail -n 1)
    rest=$(printf '%s\n' 1 2 3 | grep -vx "$x" | tr '\n' ' ')
    ok --endpoints "$(ep "$leader")" cluster remove-node --id "$x"
    wait_for "$WAIT_TIMEOUT" "node $x removed" members_are "$leader" "$(tr ' ' '\n' <<<"$rest" | grep . | tr '\n' ' ' | sed 's/ $//')"
    # shellcheck disable=SC2086
    leader_among $rest >/dev/null
    create "$leader" "without-$x"
    # Wipe it: stop and remove its container and volume.
    compose rm --stop --force "berth-$x" >/dev/null 2>&1 || fail "cannot remove berth-$x"
    timeout "$STEP_TIMEOUT" docker volume rm "${PROJECT}_berth-$x-data" >/dev/null || fail "cannot remove berth-$x's volume"
    note "removed node $x and wiped its data"
    start_join "$x"
    ok --endpoints "$(ep "$leader")" cluster add-node --id "$x" --address "berth-$x:7070" --wait 60
    wait_for "$WAIT_TIMEOUT" "node $x is a voter again" members_are "$leader" "1 2 3"
    create "$x" "rejoined-$x"
    converged 1 2 3
    leader_among 1 2 3 >/dev/null
    wait_for 60 "berth-$x healthy" docker_healthy "$x"
    note "node $x re-added with fresh data and caught up: $(wc -l <"$ACKED") containers everywhere"
}

# ---------------------------------------------------------------------------

echo "image:   $IMAGE ($(docker image inspect --format '{{.Size}}' "$IMAGE" | awk '{printf "%.1f MiB", $1/1048576}'))"
echo "engine:  $docker_info; $(docker-compose version --short 2>/dev/null | sed 's/^/docker-compose /')"
echo "project: $PROJECT"

# The client: the berth binary of the image under test, run on the host.
helper=$(timeout "$STEP_TIMEOUT" docker create --label "$TEST_LABEL" "$IMAGE") || die "docker create $IMAGE failed"
timeout "$STEP_TIMEOUT" docker cp "$helper:/usr/local/bin/berth" "$CLI" || die "cannot copy berth out of $IMAGE"
timeout "$STEP_TIMEOUT" docker rm -v "$helper" >/dev/null
"$CLI" --version >/dev/null 2>&1 || die "the image's berth binary does not run on this host"
"$CLI" cluster --help >/dev/null 2>&1 || die "the image's berth has no \`cluster\` commands"

step "compose up: three nodes healthy, a leader elected" t_up
if ((FAILED > 0)); then
    echo "$PASSED passed, $FAILED failed"
    exit 1
fi
step "create via node 2; ctr lists it via node 3's socket, berth via node 1 (TCP)" t_create_and_list
step "docker kill the leader: new leader, writes go on; restart: it catches up" t_kill_leader
step "a node's process crashes: restart policy brings it back, it catches up" t_crash
step "disconnect a follower: writes go on, it answers UNAVAILABLE; reconnect: identical data" t_cut_follower
step "partition the leader: majority elects, old leader acknowledges nothing; heal: all agree" t_cut_leader
step "grow to four (--join + add-node), then remove-node back to three" t_grow_shrink
step "remove a member, wipe it, re-add it with fresh data" t_replace_member

echo "$PASSED passed, $FAILED failed"
if ((FAILED > 0)); then
    printf 'failed: %s\n' "${FAILED_STEPS[@]}" >&2
    exit 1
fi
