#!/usr/bin/env bash
# Stop the one-node Slurm cluster started by .ci/slurm-up.sh: slurmd, slurmctld, munged, each by
# the pid in its pid file (never by name). Idempotent: nothing running is fine.
# --quiet: say nothing when there was nothing to stop.
set -euo pipefail

quiet=0
[ "${1:-}" = --quiet ] && quiet=1
say() { [ "$quiet" = 1 ] || echo "slurm-down: $*"; }

stopped=0
for pidfile in /run/slurmd.pid /run/slurmctld.pid /run/munge/munged.pid; do
  [ -s "$pidfile" ] || continue
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "slurm-down: pid $pid ($pidfile) ignored SIGTERM for 10 s; sending SIGKILL" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
    stopped=$((stopped + 1))
    echo "slurm-down: stopped $(basename "$pidfile" .pid) (pid $pid)"
  fi
  rm -f "$pidfile"
done
[ "$stopped" -gt 0 ] || say "nothing was running"
