#!/usr/bin/env bash
# Start a single-node Slurm cluster on loopback for scoreflow's `--executor slurm`
# tests and for trying the executor on one machine: Debian's slurm-wlm + munge,
# as root, no systemd, no cgroups. Idempotent: a running cluster is left as it is.
#
#   sudo scripts/slurm-up.sh      # ~8 s from nothing, ~3 s when installed
#   scripts/slurm-down.sh         # stop it
#
# State, spool and logs live under $SCOREFLOW_SLURM_DIR (default /tmp/scoreflow-slurm).
# Exits non-zero, with the daemons' last log lines, when the node does not come up:
# CI must fail loudly, never skip the cluster tests.
set -euo pipefail
D=${SCOREFLOW_SLURM_DIR:-/tmp/scoreflow-slurm}
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "slurm-up: needs root (or sudo)" >&2; exit 1; }
  exec sudo -E "$0" "$@"
fi
export DEBIAN_FRONTEND=noninteractive
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  # --no-install-recommends: 9 packages instead of 43.
  apt-get install -y --no-install-recommends slurm-wlm munge >/dev/null 2>&1 ||
    { apt-get update >/dev/null && apt-get install -y --no-install-recommends slurm-wlm munge >/dev/null; }
fi

# munge: a key (the package's postinst normally made one), the socket dir, the daemon as user munge.
[ -s /etc/munge/munge.key ] || runuser -u munge -- mungekey -c -k /etc/munge/munge.key
chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
install -d -o munge -g munge -m 0755 /run/munge
munge -n 2>/dev/null | unmunge >/dev/null 2>&1 || runuser -u munge -- /usr/sbin/munged
for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
munge -n | unmunge >/dev/null || { echo "slurm-up: munge does not work" >&2; exit 1; }

if [ -f "$D/slurmctld.pid" ] && kill -0 "$(cat "$D/slurmctld.pid")" 2>/dev/null; then
  # A busy controller may miss a call: ask for 10 s before starting afresh.
  for _ in $(seq 20); do
    [ "$(sinfo -h -n localhost -o %T 2>/dev/null)" = idle ] && { echo "slurm-up: already running"; sinfo; exit 0; }
    sleep 0.5
  done
fi
# Daemons of an earlier start that is not usable hold the ports: stop them first.
DAEMONS="slurmctld slurmd slurmscriptd"
running() { for n in $DAEMONS; do pgrep -x "$n" >/dev/null && return 0; done; return 1; }
if running; then
  for n in $DAEMONS; do pkill -x "$n" || true; done
  for _ in $(seq 100); do running || break; sleep 0.1; done
  for n in $DAEMONS; do pkill -9 -x "$n" || true; done
fi
rm -rf "$D" && mkdir -p "$D"/{state,spool,log}
# The node as the hardware describes it, named `localhost`: the sandbox's hostname
# is not a node name, so slurmd runs with -N localhost.
NODE=$(slurmd -C | head -n1 | sed 's/^NodeName=[^ ]*/NodeName=localhost NodeAddr=127.0.0.1/')
mkdir -p /etc/slurm
cat > /etc/slurm/slurm.conf <<CONF
ClusterName=scoreflow-ci
SlurmctldHost=localhost
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool
SlurmctldPidFile=$D/slurmctld.pid
SlurmdPidFile=$D/slurmd.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# Start batch jobs at once (3 s later with the defaults).
SchedulerParameters=batch_sched_delay=0
ReturnToService=2
KillWait=5
$NODE State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
slurmctld
slurmd -N localhost
for _ in $(seq 60); do
  [ "$(sinfo -h -n localhost -o %T 2>/dev/null)" = idle ] && break; sleep 0.5; done
# The first batch-scheduler pass runs ~3 s after slurmctld starts; wait for it so
# the first sbatch job starts promptly.
for _ in $(seq 60); do grep -q 'SchedulerParameters=' "$D/log/slurmctld.log" && break; sleep 0.1; done
if [ "$(sinfo -h -n localhost -o %T 2>/dev/null)" != idle ]; then
  echo "slurm-up: the node did not become idle" >&2; tail -n 20 "$D"/log/*.log >&2; exit 1
fi
sinfo
