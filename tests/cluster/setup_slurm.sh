#!/usr/bin/env bash
# A single-node SLURM on this machine, for tests/cluster/test_slurm.py (`make test-cluster`).
#
#   sudo tests/cluster/setup_slurm.sh          # install, configure, start; safe to rerun
#   tests/cluster/setup_slurm.sh --stop        # stop the daemons it started
#
# Installs Debian's slurm-wlm daemons, munge and MariaDB; runs slurmctld and slurmd on
# this host and slurmdbd on MariaDB, because `sacct` reads jobs only from the accounting
# database (jobcomp/filetxt writes a log that sacct never reads). The node advertises
# stand-in GPUs (gres "gpu" on device files that are copies of /dev/null): the workflow's `gpu`
# requests are scheduled and accounted as asked, and the jobs find no CUDA and use the CPU
# (ERNERF_SLURM_GPUS=0, or no mknod here: no GPUs, and the test relaxes the GPU requests).
# Cluster, account and partition names: ERNERF_SLURM_CLUSTER / _ACCOUNT / _PARTITION.
# Exit status 3 means "this machine cannot run it" (not root, no package access).
set -euo pipefail

CLUSTER=${ERNERF_SLURM_CLUSTER:-ernerf-test}
ACCOUNT=${ERNERF_SLURM_ACCOUNT:-ernerf-test}
PARTITION=${ERNERF_SLURM_PARTITION:-ernerf-test}
FAKE_GPUS=${ERNERF_SLURM_GPUS:-2}
DB_PASS=ernerf-slurmdbd   # a throwaway database on a throwaway test cluster
LOGDIR=/var/log/slurm
PACKAGES=(slurmctld slurmd slurm-client slurmdbd munge mariadb-server)

say() { echo "setup_slurm: $*"; }
cannot() { echo "setup_slurm: cannot run here: $*" >&2; exit 3; }

running() {  # running NAME: the daemon of /run/NAME.pid is alive (not another process reusing its pid)
    [[ -s /run/$1.pid ]] && [[ $(cat "/proc/$(cat "/run/$1.pid")/comm" 2>/dev/null) == "$1" ]]
}

stop_all() {
    local name pid
    for name in slurmctld slurmd slurmdbd; do
        if running "$name"; then
            pid=$(cat "/run/$name.pid")
            kill "$pid"
            for ((i = 0; i < 60 && $(kill -0 "$pid" 2>/dev/null && echo 1 || echo 0); i++)); do sleep 0.5; done
            say "stopped $name"
        fi
    done
}

if [[ ${1:-} == --stop ]]; then
    stop_all
    exit 0
fi

[[ $EUID -eq 0 ]] || cannot "needs root (it installs packages and starts daemons)"
command -v apt-get >/dev/null || cannot "no apt-get (Debian or Ubuntu needed)"

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # no daemon starts from the package scripts; this script starts them itself
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    if ! apt-get install -y -q --no-install-recommends "${missing[@]}" >/tmp/setup_slurm_apt.log 2>&1; then
        apt-get update -q >>/tmp/setup_slurm_apt.log 2>&1 \
            && apt-get install -y -q --no-install-recommends "${missing[@]}" >>/tmp/setup_slurm_apt.log 2>&1 \
            || cannot "apt-get install ${missing[*]} failed (no package access?), see /tmp/setup_slurm_apt.log"
    fi
    rm -f /usr/sbin/policy-rc.d
    trap - EXIT
fi

HOST=$(hostname -s)
# the node as slurmd sees the hardware (CPUs, sockets, cores, threads), less a tenth of the
# memory for the operating system, as on a real node
NODE_HW=$(slurmd -C | awk '/^NodeName/ {for (i = 2; i <= NF; i++) if ($i !~ /^(RealMemory|Boards)=/) printf "%s ", $i}')
CPUS=$(nproc)
MEM=$(($(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p') * 9 / 10))

mkdir -p /etc/slurm "$LOGDIR" /var/spool/slurmctld /var/spool/slurmd /run/munge /run/mysqld
chown slurm:slurm "$LOGDIR" /var/spool/slurmctld
chown munge:munge /run/munge
chown mysql:mysql /run/mysqld

# Stand-in GPUs: slurmd drops a GPU without a device file, so each one is a character device
# with /dev/null's numbers (1, 3): scheduled and accounted like a GPU, harmless if opened.
# Where no device file can be made (a container without mknod) the node has no GPUs, and
# the test relaxes the GPU requests on its command line instead.
FAKE_DIR=/var/lib/slurm-fake-gpus
mkdir -p "$FAKE_DIR"
for ((g = 0; g < FAKE_GPUS; g++)); do
    if [[ ! -c $FAKE_DIR/gpu$g ]] && ! mknod "$FAKE_DIR/gpu$g" c 1 3 2>/dev/null; then
        say "cannot make device files here (mknod): the node gets no GPUs"
        FAKE_GPUS=0
    fi
done
NODE_GRES=$( ((FAKE_GPUS > 0)) && echo "Gres=gpu:$FAKE_GPUS " || true)

# --- configuration (rewritten every time; a change restarts the daemons below) ----------------
conf_changed=0
write_conf() {  # write_conf PATH OWNER MODE < content
    local tmp
    tmp=$(mktemp)
    cat >"$tmp"
    if [[ ! -f $1 ]] || ! cmp -s "$tmp" "$1"; then
        install -o "$2" -g "$2" -m "$3" "$tmp" "$1"
        conf_changed=1
    fi
    rm -f "$tmp"
}

write_conf /etc/slurm/slurm.conf root 644 <<EOF
# Written by tests/cluster/setup_slurm.sh: a one-node test cluster.
ClusterName=$CLUSTER
SlurmctldHost=$HOST
SlurmUser=slurm
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOGDIR/slurmctld.log
SlurmdLogFile=$LOGDIR/slurmd.log
# no cgroups needed (containers often have none to give), so no cgroup.conf
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=10
# cores and memory are consumable: a job gets what it asked for, no more
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStorageTRES=gres/gpu
AccountingStorageEnforce=associations
# the job comment (the plugin writes rule and wildcards there) kept for sacct
AccountingStoreFlags=job_comment
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
# finished jobs stay in squeue a while; sacct has them for good
MinJobAge=300
SlurmctldTimeout=30
SlurmdTimeout=60
InactiveLimit=0
KillWait=10
NodeName=$HOST NodeAddr=127.0.0.1 ${NODE_HW}RealMemory=$MEM ${NODE_GRES}State=UNKNOWN
PartitionName=$PARTITION Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF

if ((FAKE_GPUS > 0)); then
    write_conf /etc/slurm/gres.conf root 644 <<EOF
# Written by tests/cluster/setup_slurm.sh: stand-in GPUs (see there).
NodeName=$HOST Name=gpu File=$FAKE_DIR/gpu[0-$((FAKE_GPUS - 1))]
EOF
else
    write_conf /etc/slurm/gres.conf root 644 <<EOF
# Written by tests/cluster/setup_slurm.sh: no GPUs on this node.
EOF
fi

write_conf /etc/slurm/slurmdbd.conf slurm 600 <<EOF
# Written by tests/cluster/setup_slurm.sh
AuthType=auth/munge
DbdHost=localhost
SlurmUser=slurm
PidFile=/run/slurmdbd.pid
LogFile=$LOGDIR/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF

wait_for() {  # wait_for SECONDS WHAT COMMAND...
    local t=$1 what=$2
    shift 2
    for ((i = 0; i < t * 2; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    echo "setup_slurm: $what did not come up in ${t}s; logs in $LOGDIR" >&2
    tail -n 20 "$LOGDIR"/*.log >&2 2>/dev/null || true
    exit 1
}

if ((conf_changed)); then
    stop_all
fi

# --- munge ----------------------------------------------------------------------------------
if [[ ! -s /etc/munge/munge.key ]]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
fi
chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    runuser -u munge -- /usr/sbin/munged </dev/null >/dev/null 2>&1
    wait_for 10 munged sh -c 'munge -n | unmunge'
fi

# --- MariaDB and the accounting database ---------------------------------------------------
if ! mysqladmin ping >/dev/null 2>&1; then
    [[ -d /var/lib/mysql/mysql ]] || mariadb-install-db --user=mysql >/dev/null
    # a small buffer pool: the accounting tables of a test cluster are tiny
    (cd / && setsid mariadbd-safe --user=mysql --innodb-buffer-pool-size=32M \
        --skip-networking=0 --bind-address=127.0.0.1 </dev/null >"$LOGDIR/mariadb.log" 2>&1 &)
    wait_for 60 MariaDB mysqladmin ping
fi
mysql -u root <<EOF
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
FLUSH PRIVILEGES;
EOF

# --- slurmdbd, then the cluster, account and user, then slurmctld and slurmd ---------------
if ! running slurmdbd; then
    slurmdbd </dev/null >/dev/null 2>&1
    wait_for 60 slurmdbd sacctmgr -n list cluster
fi
sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER" || sacctmgr -i add cluster "$CLUSTER" >/dev/null
sacctmgr -n -P list account format=account | grep -qx "$ACCOUNT" \
    || sacctmgr -i add account "$ACCOUNT" cluster="$CLUSTER" description="ernerf tests" organization=ernerf >/dev/null
sacctmgr -n -s -P list user "$(whoami)" format=account | grep -qx "$ACCOUNT" \
    || sacctmgr -i add user "$(whoami)" account="$ACCOUNT" cluster="$CLUSTER" >/dev/null

if ! running slurmctld; then
    slurmctld </dev/null >/dev/null 2>&1
    wait_for 60 slurmctld scontrol ping
fi
if ! running slurmd; then
    slurmd </dev/null >/dev/null 2>&1
fi
node_up() { sinfo -h -n "$HOST" -o %t | grep -Eq '^(idle|mix|alloc)'; }
for ((i = 0; i < 60; i++)); do
    node_up && break
    # a node that was down when the controller last saw it stays down until resumed
    sinfo -h -n "$HOST" -o %t | grep -Eq 'down|drain|inval' && scontrol update nodename="$HOST" state=resume 2>/dev/null
    sleep 1
done
wait_for 5 "node $HOST" node_up

say "cluster $CLUSTER up: node $HOST ($CPUS CPUs, ${MEM} MB, $FAKE_GPUS stand-in GPUs), partition $PARTITION, account $ACCOUNT"
