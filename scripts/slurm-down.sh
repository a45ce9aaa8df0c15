#!/usr/bin/env bash
# Stop the cluster scripts/slurm-up.sh started (cancelling leftover jobs), and munge.
# Safe to run when nothing is up.
set -u
D=${SCOREFLOW_SLURM_DIR:-/tmp/scoreflow-slurm}
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null; then exec sudo -E "$0" "$@"; fi
# Stop pid $1 only if it really is program $2 (stale pid files, reused pids).
stop() { local p=$1 n=$2 i; [ -n "$p" ] && [ "$(cat /proc/$p/comm 2>/dev/null)" = "$n" ] || return 0
  [ "${3:-}" = term ] && kill "$p"
  for i in $(seq 100); do kill -0 "$p" 2>/dev/null || return 0; sleep 0.1; done; kill -9 "$p"; }
ctld=$(cat "$D/slurmctld.pid" 2>/dev/null); sd=$(cat "$D/slurmd.pid" 2>/dev/null)
if [ -n "$ctld$sd" ]; then
  squeue -h -o %i 2>/dev/null | xargs -r scancel 2>/dev/null
  for _ in $(seq 150); do [ -z "$(squeue -h 2>/dev/null)" ] && break; sleep 0.1; done
  scontrol shutdown 2>/dev/null
  stop "$ctld" slurmctld; stop "$sd" slurmd
  rm -f "$D/slurmctld.pid" "$D/slurmd.pid"
fi
stop "$(cat /run/munge/munged.pid 2>/dev/null)" munged term
rm -f /run/munge/munged.pid
echo "slurm-down: stopped"
