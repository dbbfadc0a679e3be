#!/usr/bin/env bash
# Builds berth and starts a local three-node cluster on loopback:
#   node N: TCP 127.0.0.1:707N, unix socket cluster/run/nodeN/berth.sock,
#   data in cluster/run/nodeN/, log in cluster/run/nodeN.log.
# Waits until the cluster has a leader, then prints how to use it.
# Stop it with cluster/down.sh. Environment:
#   BERTH_PROFILE=debug   use a debug build (default: release)
#   BERTH_SERVE_ARGS=...  extra flags for every `berth serve`
# The three nodes share this machine's CPUs: each gets a third of them as
# worker threads (at least one) unless BERTH_WORKER_THREADS says otherwise.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
run="$here/run"
profile=${BERTH_PROFILE:-release}

cd "$repo"
if [ "$profile" = release ]; then
  cargo build --release --quiet
else
  cargo build --quiet
fi
bin="$repo/target/$profile/berth"

mkdir -p "$run"
cpus=$(nproc 2>/dev/null || echo 3)
export BERTH_WORKER_THREADS=${BERTH_WORKER_THREADS:-$(( cpus / 3 > 0 ? cpus / 3 : 1 ))}
initial="1=127.0.0.1:7071,2=127.0.0.1:7072,3=127.0.0.1:7073"
for n in 1 2 3; do
  pidfile="$run/node$n.pid"
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    echo "node $n is already running (pid $(cat "$pidfile")); run cluster/down.sh first" >&2
    exit 1
  fi
  # shellcheck disable=SC2086
  setsid "$bin" serve --node-id "$n" --listen "127.0.0.1:707$n" \
    --data-dir "$run/node$n" --initial-cluster "$initial" ${BERTH_SERVE_ARGS:-} \
    >>"$run/node$n.log" 2>&1 </dev/null &
  echo $! >"$pidfile"
  echo "started node $n (pid $!)"
done

endpoints="127.0.0.1:7071,127.0.0.1:7072,127.0.0.1:7073"
for _ in $(seq 1 100); do
  if "$bin" --endpoints "$endpoints" cluster health >/dev/null 2>&1; then
    "$bin" --endpoints "$endpoints" cluster status
    cat <<EOT

The cluster is up. Try:
  $bin --endpoints $endpoints containers create demo --label app=web
  $bin --endpoints 127.0.0.1:7073 containers list
  ctr -a $run/node2/berth.sock containers ls
  ctr -a $run/node3/berth.sock events
  $bin --endpoints $endpoints bench --workload write --concurrency 64
Logs: $run/node{1,2,3}.log    Stop: cluster/down.sh
EOT
    exit 0
  fi
  sleep 0.2
done
echo "the cluster did not elect a leader within 20s; see $run/node*.log" >&2
exit 1
