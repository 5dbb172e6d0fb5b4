#!/usr/bin/env bash
# Bring up a real one-node Slurm cluster on this machine (Debian's Slurm 22.05 + munge).
#
# Used by .ci/run to push the quickstart smoke workflow through the shipped Slurm profile;
# also handy on a workstation to try `snakemake --profile slurm` for real. Needs root.
# Idempotent: a cluster already up with the same configuration is left alone; otherwise our
# daemons are stopped (by their pid files) and started afresh. Undo with .ci/slurm-down.sh.
#
# Slurm's configuration must live at Debian's default /etc/slurm/slurm.conf and munged must use
# its default socket: the Snakemake Slurm job-step plugin drops SLURM_CONF before its inner srun.
set -euo pipefail

CONF=/etc/slurm/slurm.conf
KEY=/etc/munge/munge.key
LOGDIR=/var/log/slurm
STATEDIR=/var/lib/slurm
WAIT_S=${SLURM_UP_TIMEOUT:-60}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

die() { echo "slurm-up: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "must run as root (it writes $CONF and starts daemons)"

# --- packages -------------------------------------------------------------------------------
missing=()
for bin in munged mungekey slurmctld slurmd sinfo srun sbatch squeue; do
  command -v "$bin" >/dev/null 2>&1 || missing+=("$bin")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "slurm-up: installing Debian's Slurm and munge (missing: ${missing[*]})"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
fi

# --- configuration --------------------------------------------------------------------------
cpus=$(nproc)
mem_mib=$(( $(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024 - 2048 ))
[ "$mem_mib" -gt 1024 ] || die "too little memory for a node ($mem_mib MiB after reserving 2 GiB)"

conf_text=$(cat <<EOF
# Written by deltaspace .ci/slurm-up.sh: a one-node cluster for CI (no accounting database).
ClusterName=deltaspace-ci
SlurmctldHost=localhost
AuthType=auth/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$STATEDIR/slurmctld
SlurmdSpoolDir=$STATEDIR/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOGDIR/slurmctld.log
SlurmdLogFile=$LOGDIR/slurmd.log
MpiDefault=none
SwitchType=switch/none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=2000
MinJobAge=600
ReturnToService=2
NodeName=localhost CPUs=$cpus RealMemory=$mem_mib State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
)

pid_alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
node_state() { timeout 10 sinfo -h -N -o %t 2>/dev/null | head -n 1 || true; }

if [ -f "$CONF" ] && [ "$(cat "$CONF")" = "$conf_text" ] \
   && pid_alive /run/munge/munged.pid && pid_alive /run/slurmctld.pid && pid_alive /run/slurmd.pid \
   && [ "$(node_state)" = idle ]; then
  echo "slurm-up: already up (${cpus} CPUs, ${mem_mib} MiB); nothing to do"
  sinfo
  exit 0
fi

# Anything of ours half up (or up with another configuration): stop it first.
"$here/slurm-down.sh" --quiet

mkdir -p /etc/slurm /etc/munge "$LOGDIR" "$STATEDIR/slurmctld" "$STATEDIR/slurmd" /run/munge /var/log/munge /var/lib/munge
printf '%s\n' "$conf_text" > "$CONF"
: > "$LOGDIR/slurmctld.log"
: > "$LOGDIR/slurmd.log"

[ -s "$KEY" ] || mungekey -c -f -k "$KEY"    # Debian's postinst usually made one already
chown -R munge:munge "$KEY" /run/munge /var/log/munge /var/lib/munge
chmod 0600 "$KEY"

# --- daemons --------------------------------------------------------------------------------
runuser -u munge -- munged --key-file="$KEY" || die "munged failed to start (see /var/log/munge/munged.log)"
for _ in $(seq 50); do [ -S /run/munge/munge.socket.2 ] && break; sleep 0.1; done
[ -S /run/munge/munge.socket.2 ] || die "munged did not create /run/munge/munge.socket.2"

slurmctld -c          # -c: start with a clean job state
slurmd -N localhost

show_logs() {
  echo "----- sinfo -----" >&2; timeout 10 sinfo -N -l >&2 || true
  for f in "$LOGDIR/slurmctld.log" "$LOGDIR/slurmd.log" /var/log/munge/munged.log; do
    echo "----- tail $f -----" >&2; tail -n 40 "$f" >&2 2>/dev/null || echo "(no log)" >&2
  done
}

start=$SECONDS
while :; do
  state=$(node_state)
  [ "$state" = idle ] && break
  if [ $((SECONDS - start)) -ge "$WAIT_S" ]; then
    echo "slurm-up: node not idle after ${WAIT_S}s (state: '${state:-no answer}')" >&2
    show_logs
    exit 1
  fi
  sleep 0.5
done
echo "slurm-up: one-node cluster up in $((SECONDS - start))s (${cpus} CPUs, ${mem_mib} MiB, partition debug)"
sinfo
