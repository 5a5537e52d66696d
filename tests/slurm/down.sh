#!/usr/bin/env bash
# Stop the daemons tests/slurm/up.sh started (newest first) and forget them and its configuration.
set -uo pipefail
STATE="${DYNAMIGHT_SLURM_STATE:-/var/tmp/dynamight-slurm}"
PIDS="$STATE/pids"
if [ -f "$PIDS" ]; then
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
fi
# Forget the configuration up.sh wrote, too: with a slurm.conf naming a controller that is
# gone, every SLURM client (and so every snakemake start, whose SLURM plugin asks
# `scontrol show config`) waits about 10 s for it. up.sh writes it again.
for name in slurm.conf gres.conf slurmdbd.conf; do
  target="/etc/slurm/$name"
  [ -f "$target" ] && grep -q "dynamight-test-cluster" "$target" && rm -f "$target"
done
exit 0
