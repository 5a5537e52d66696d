#!/usr/bin/env bash
# Stop the daemons tests/slurm/up.sh started (newest first) and forget them.
set -uo pipefail
STATE="${DYNAMIGHT_SLURM_STATE:-/var/tmp/dynamight-slurm}"
PIDS="$STATE/pids"
[ -f "$PIDS" ] || exit 0
command -v scancel >/dev/null && scancel --user=root >/dev/null 2>&1
tac "$PIDS" | while read -r name pid; do
  case "$name" in *-foreign) continue ;; esac
  kill -0 "$pid" 2>/dev/null || continue
  kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
  echo "[test-cluster] stopped $name ($pid)"
done
rm -f "$PIDS"
