#!/usr/bin/env bash
# A real one-node SLURM cluster on this machine, for the sweep's SLURM tests (no systemd, no accounting).
#
#   scripts/slurm-single-node.sh start    # install slurm-wlm + munge if missing, start munged, slurmctld, slurmd
#   scripts/slurm-single-node.sh stop     # stop the three daemons by their pid files
#
# Everything lives in $SEMISUP_SLURM_DIR (default: semisup-slurm in the temporary folder): slurm.conf, state,
# spool, logs, pid files, and env, a file to source (it exports SLURM_CONF). Needs root (apt-get, munged's key, slurmd). One partition,
# "debug", holds the node. Time limits are checked every 30 s by SLURM itself.
set -euo pipefail

dir=${SEMISUP_SLURM_DIR:-$(dirname "$(mktemp -u)")/semisup-slurm}
node=$(hostname -s)

install_if_missing() {
    if command -v slurmctld >/dev/null && command -v munged >/dev/null && command -v sbatch >/dev/null; then
        return
    fi
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends slurm-wlm munge >/dev/null
}

write_conf() {
    local cpus mem
    cpus=$(nproc)
    mem=$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)
    mkdir -p "$dir/state" "$dir/spool" "$dir/log"
    cat >"$dir/slurm.conf" <<EOF
ClusterName=semisup
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
SlurmctldPort=6817
SlurmdPort=6818
AuthType=auth/munge
AuthInfo=cred_expire=10
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
JobRequeue=1
MinJobAge=3600
SchedulerParameters=bf_interval=5,sched_interval=5
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
    echo "export SLURM_CONF=$dir/slurm.conf" >"$dir/env"
}

start_munge() {
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    chmod 0755 /run/munge
    if [ ! -s /etc/munge/munge.key ]; then
        runuser -u munge -- /usr/sbin/mungekey --create >/dev/null 2>&1 || /usr/sbin/create-munge-key >/dev/null
    fi
    if [ -s /run/munge/munged.pid ] && kill -0 "$(cat /run/munge/munged.pid)" 2>/dev/null; then
        return  # someone else's munged: leave it running on stop
    fi
    runuser -u munge -- /usr/sbin/munged
    cp /run/munge/munged.pid "$dir/munged.pid"
}

wait_idle() {
    local i
    for i in $(seq 1 120); do
        if [ "$(SLURM_CONF=$dir/slurm.conf sinfo -h -n "$node" -o %t 2>/dev/null)" = "idle" ]; then
            return 0
        fi
        sleep 0.25
    done
    echo "slurm-single-node.sh: error: node $node is not idle after 30 s (see $dir/log/)" >&2
    return 1
}

start() {
    local t0=$SECONDS
    install_if_missing
    stop_daemons
    rm -rf "$dir/state" "$dir/spool"  # a fresh cluster: job ids start again at 1
    write_conf
    start_munge
    SLURM_CONF=$dir/slurm.conf /usr/sbin/slurmctld -i -f "$dir/slurm.conf"
    SLURM_CONF=$dir/slurm.conf /usr/sbin/slurmd -N "$node" -f "$dir/slurm.conf"
    wait_idle
    echo "SLURM up on $node in $((SECONDS - t0)) s: source $dir/env (SLURM_CONF=$dir/slurm.conf)"
}

stop_pid_file() {
    local file=$1 pid i
    [ -s "$file" ] || return 0
    pid=$(cat "$file")
    if kill "$pid" 2>/dev/null; then
        for i in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$file"
}

stop_daemons() {
    stop_pid_file "$dir/slurmd.pid"
    stop_pid_file "$dir/slurmctld.pid"
}

case "${1:-}" in
    start) start ;;
    stop) stop_daemons; stop_pid_file "$dir/munged.pid" ;;
    *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
