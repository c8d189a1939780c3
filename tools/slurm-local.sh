#!/usr/bin/env bash
# A one-host Slurm cluster on this machine, for the test suite and for trying
# cluster/slurm/sceneps.sbatch without a real cluster (DESIGN.md §6).
#
#   tools/slurm-local.sh start DIR   install slurm-wlm + munge when missing (tools/install-deps.sh --slurm),
#                                    start munged, then slurmctld + slurmd with DIR/slurm.conf; prints
#                                    `export SLURM_CONF=DIR/slurm.conf` (sbatch, srun, squeue need it)
#   tools/slurm-local.sh stop DIR    stop the slurmctld and slurmd started with DIR (munged is left running:
#                                    other users of munge may share it)
#
# Exit status: 0 done; 3 cannot run here (not root, no apt, the daemons would not start; the reason is
# printed: a test skips on it); 1 anything else. Needs root: slurmd launches job steps as their user and
# munged needs its own key directory. The cluster: one node (this host, all its CPUs), one partition
# `sceneps` with OverSubscribe=FORCE:8 so many job steps share the cores, RequeueExit=130,137,143 (the
# retryable exit codes of docs/DEPLOY-SLURM-K8S.md: a job that ends with one is queued again), state and
# logs under DIR. Ports 6817/6818 (slurmctld/slurmd) must be free: when another Slurm holds them (another
# test run's cluster, say) it exits 3 saying so, rather than send jobs to that cluster.
set -euo pipefail
cmd=${1:-} dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 2; }
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cant() { echo "slurm-local: cannot run a Slurm cluster here: $*" >&2; exit 3; }
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
conf="$dir/slurm.conf"

# Starts a daemon with no descriptor of this script but stdin/stdout/stderr, those on /dev/null or a log
# file. Whoever runs this script may have handed it more: Foundation's Process (the test harness) passes
# a socket whose closing tells it the child exited, and a daemon that keeps it (munged does) makes this
# script look alive until the daemon dies; the output pipe likewise would never reach EOF.
daemon() {
  local log=$1; shift
  (
    for p in /proc/$BASHPID/fd/*; do
      fd=${p##*/}
      case "$fd" in 0|1|2|*[!0-9]*) ;; *) eval "exec $fd>&-" 2>/dev/null || true ;; esac
    done
    exec "$@" </dev/null >>"$log" 2>&1
  )
}

stop() {
  for d in slurmd slurmctld; do
    [ -f "$dir/$d.pid" ] || continue
    pid=$(cat "$dir/$d.pid" 2>/dev/null || true)
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$dir/$d.pid"
  done
}

case "$cmd" in
  stop) stop; exit 0 ;;
  start) ;;
  *) echo "slurm-local: unknown command '$cmd' (start or stop)" >&2; exit 2 ;;
esac

[ "$(id -u)" -eq 0 ] || cant "it needs root (slurmd starts job steps as their user, munged needs its key); run as root or skip"
"$ROOT/tools/install-deps.sh" --slurm || cant "slurm-wlm and munge are not installed and could not be installed (see above)"
for b in munged slurmctld slurmd sbatch srun scancel squeue sinfo; do
  command -v $b >/dev/null || cant "$b is missing after installing slurm-wlm and munge"
done

# munge: the key the package made (or a new one), its run directory, the daemon (one per machine).
if [ ! -s /etc/munge/munge.key ]; then
  mkdir -p /etc/munge
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
fi
chown -R munge:munge /etc/munge /var/lib/munge /var/log/munge 2>/dev/null || true
chmod 0700 /etc/munge; chmod 0400 /etc/munge/munge.key
mkdir -p /run/munge; chown munge:munge /run/munge; chmod 0755 /run/munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  daemon "$dir/munged.out" runuser -u munge -- /usr/sbin/munged || cant "munged did not start (see /var/log/munge/munged.log)"
  for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
  munge -n | unmunge >/dev/null 2>&1 || cant "munged runs but a credential does not round-trip"
fi

stop   # a cluster left by an earlier run with this DIR
# Another Slurm on this host (a real one, or another test run's cluster): its slurmctld would answer our
# sinfo/sbatch on the same ports, and jobs would cross. Refuse rather than share it.
for port in 6817 6818; do
  if timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port" 2>/dev/null; then
    owner=$(pgrep -a -f "slurm(ctl)?d -f" | head -2 | tr '\n' ';' || true)
    cant "port $port is in use (another Slurm on this host, e.g. another test run's cluster: ${owner:-unknown}); one test cluster per host at a time"
  fi
done
host=$(hostname -s)
cpus=$(getconf _NPROCESSORS_ONLN)
mem=$(awk '/MemTotal/ { print int($2 / 1024 * 0.9) }' /proc/meminfo)
mkdir -p "$dir/state" "$dir/spool"
rm -rf "$dir/state"/* "$dir/spool"/*   # a fresh cluster: no jobs of an earlier run
cat > "$conf" <<EOF
# Written by tools/slurm-local.sh: a one-host cluster for tests.
ClusterName=sceneps
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
SchedulerType=sched/backfill
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
# The retryable exit codes (Kubeflow's convention): such a job is queued again.
RequeueExit=130,137,143
KillWait=10
MinJobAge=300
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=sceneps Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:8
EOF
export SLURM_CONF="$conf"
daemon "$dir/slurmctld.out" /usr/sbin/slurmctld -f "$conf" || cant "slurmctld did not start (see $dir/slurmctld.log)"
daemon "$dir/slurmd.out" /usr/sbin/slurmd -f "$conf" || cant "slurmd did not start (see $dir/slurmd.log)"
for _ in $(seq 100); do
  state=$(sinfo -h -N -o '%t' 2>/dev/null | head -1 || true)
  case "$state" in idle|mix|alloc) break ;; esac
  sleep 0.2
done
case "$state" in idle|mix|alloc) ;; *) cant "node $host did not come up (state '${state:-none}'; see $dir/slurmd.log, $dir/slurmctld.log)" ;; esac
echo "export SLURM_CONF=$conf"
