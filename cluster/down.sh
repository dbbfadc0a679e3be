#!/usr/bin/env bash
# Stops the nodes cluster/up.sh started (and only those: by the pids it
# recorded, checked to still be `berth serve` processes).
# `cluster/down.sh --wipe` also deletes their data and logs.
set -euo pipefail

run="$(cd "$(dirname "$0")" && pwd)/run"
for pidfile in "$run"/node*.pid; do
  [ -e "$pidfile" ] || continue
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "berth serve"; then
    kill -TERM "$pid"
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
    echo "stopped $(basename "$pidfile" .pid) (pid $pid)"
  fi
  rm -f "$pidfile"
done
if [ "${1:-}" = "--wipe" ]; then
  rm -rf "$run"
  echo "wiped $run"
fi
