#!/usr/bin/env bash
# A single-node Slurm cluster on this machine, for tests and for trying the slurm profile
# (docs/cluster.md). Debian's slurm-wlm 22.05, munge and MariaDB; everything it writes lives
# under $LLMQFL_SLURM_DIR (default /tmp/llmqfl-slurm) and `stop` removes it again.
#
#   scripts/slurm/cluster.sh start    # installs the packages if missing (needs root), starts the daemons
#   scripts/slurm/cluster.sh status   # exit 0 when the controller answers and the node is idle
#   scripts/slurm/cluster.sh env      # the exports a client shell needs (SLURM_CONF, partition, account)
#   scripts/slurm/cluster.sh stop     # stops the daemons it started and deletes its folder
#
# Accounting goes through slurmdbd into MariaDB: in Slurm 22.05 `sacct` reads only the accounting
# storage (jobcomp/filetxt is not readable by sacct and accounting_storage/filetxt is gone), and
# sacct is what the Snakemake executor polls and what the test counts jobs with.
# No cgroups (containers seldom delegate them): processes are tracked by their parent ids
# (proctrack/linuxproc) and nothing is confined (task/none); memory is still booked by the scheduler.
set -euo pipefail

DIR=${LLMQFL_SLURM_DIR:-/tmp/llmqfl-slurm}
CLUSTER=llmqfl
PARTITION=${LLMQFL_SLURM_PARTITION:-llmqfl}
ACCOUNT=${LLMQFL_SLURM_ACCOUNT:-llmqfl}
CTLD_PORT=${LLMQFL_SLURM_PORT:-6817}          # slurmd takes the next port, slurmdbd the one after
DB_PORT=${LLMQFL_SLURM_DB_PORT:-3307}         # MariaDB on loopback only
# the daemons and clients without Debian's recommended extras (slurm-wlm's plugins, mariadb-server's tools)
PACKAGES=(slurmctld slurmd slurm-client slurmdbd munge mariadb-server-core mariadb-client-core)
NODE=$(hostname -s)
CONF=$DIR/etc/slurm.conf
MUNGE_SOCKET=/run/munge/munge.socket.2
# Where Slurm's clients look for the config when $SLURM_CONF is unset and /etc/slurm/slurm.conf is absent:
# a "configless" node's cache. The executor plugin's job steps drop every SLURM_* variable before they
# call srun, so the config must be found there, as on a real cluster's nodes.
NODE_CONF=/run/slurm/conf

log() { echo "cluster.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

install_packages() {
    local missing=()
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    [ "$(id -u)" -eq 0 ] || die "packages missing (${missing[*]}) and not root: apt-get install ${missing[*]}"
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>"$DIR.apt.log" \
        || { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>"$DIR.apt.log"; } \
        || die "apt-get install failed: $(tail -5 "$DIR.apt.log")"
}

# wait_for SECONDS WHAT COMMAND...: poll COMMAND until it succeeds, at most SECONDS
wait_for() {
    local deadline=$((SECONDS + $1)) what=$2; shift 2
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || die "$what did not come up in time; the logs: $(ls "$DIR"/log/* 2>/dev/null | tr '\n' ' ')"
        sleep 0.2
    done
}

write_configs() {
    local cpus mem_mb
    cpus=$(nproc)
    # the node offers what the machine has, less 1 GiB for the daemons
    mem_mb=$(( $(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo) - 1024 ))
    mkdir -p "$DIR"/{etc,log,run,ctld,spool,munge,mysql}
    chmod 700 "$DIR/munge"
    cat >"$CONF" <<EOF
# written by scripts/slurm/cluster.sh: one node, one partition, accounting in slurmdbd
ClusterName=$CLUSTER
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$((CTLD_PORT + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$DIR/ctld
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=5
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$((CTLD_PORT + 2))
AccountingStorageEnforce=associations
AccountingStoreFlags=job_comment
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MinJobAge=300
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
MpiDefault=none
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
    cat >"$DIR/etc/cgroup.conf" <<EOF
# no cgroup plugin is configured (proctrack/linuxproc, task/none); slurmd still reads this file
CgroupPlugin=autodetect
IgnoreSystemd=yes
EOF
    cat >"$DIR/etc/slurmdbd.conf" <<EOF
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$((CTLD_PORT + 2))
SlurmUser=root
LogFile=$DIR/log/slurmdbd.log
PidFile=$DIR/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
EOF
    chmod 600 "$DIR/etc/slurmdbd.conf"
    cat >"$DIR/etc/env" <<EOF
export SLURM_CONF=$CONF
export SLURM_PARTITION=$PARTITION
export SLURM_ACCOUNT=$ACCOUNT
EOF
}

# Slurm's clients (sacctmgr, sbatch in jobs) reach munge on its default socket, so munged runs there:
# a munged that already answers is used as it is (and left running by stop), else one is started
# with a fresh key of this cluster.
start_munge() {
    munge_works && return 0
    dd if=/dev/urandom bs=1 count=1024 of="$DIR/munge/munge.key" status=none
    chmod 400 "$DIR/munge/munge.key"
    mkdir -p "$(dirname "$MUNGE_SOCKET")"
    /usr/sbin/munged --force --num-threads=10 --key-file="$DIR/munge/munge.key" --socket="$MUNGE_SOCKET" \
        --pid-file="$DIR/run/munged.pid" --log-file="$DIR/log/munged.log" --seed-file="$DIR/munge/seed"
    wait_for 10 munged munge_works
}

munge_works() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

start_mariadb() {
    mariadb-install-db --no-defaults --user=root --datadir="$DIR/mysql" --auth-root-authentication-method=socket \
        --skip-test-db >"$DIR/log/mariadb-install.log" 2>&1 || die "mariadb-install-db failed: see $DIR/log/mariadb-install.log"
    /usr/sbin/mariadbd --no-defaults --user=root --datadir="$DIR/mysql" --bind-address=127.0.0.1 --port="$DB_PORT" \
        --socket="$DIR/run/mysqld.sock" --pid-file="$DIR/run/mysqld.pid" --log-error="$DIR/log/mariadb.log" \
        --innodb-buffer-pool-size=64M --innodb-log-file-size=48M --skip-log-bin >/dev/null 2>&1 &
    wait_for 30 mariadb mariadb --no-defaults -S "$DIR/run/mysqld.sock" -u root -e "select 1"
    mariadb --no-defaults -S "$DIR/run/mysqld.sock" -u root -e "
        CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm';
        GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"
}

start() {
    if status >/dev/null 2>&1; then log "already running (SLURM_CONF=$CONF)"; return 0; fi
    [ -e "$DIR" ] && die "$DIR exists but the cluster does not answer: run '$0 stop' first"
    [ -e /etc/slurm/slurm.conf ] && die "/etc/slurm/slurm.conf exists: this machine belongs to a Slurm cluster already (use it)"
    [ -e "$NODE_CONF" ] && die "$NODE_CONF exists: another Slurm configuration is in use on this machine"
    mkdir -p "$DIR"
    install_packages
    write_configs
    export SLURM_CONF=$CONF
    mkdir -p "$(dirname "$NODE_CONF")"
    ln -s "$DIR/etc" "$NODE_CONF"
    start_munge
    start_mariadb
    /usr/sbin/slurmdbd
    wait_for 60 slurmdbd sacctmgr -n list cluster
    sacctmgr -i -Q add cluster "$CLUSTER" >/dev/null
    sacctmgr -i -Q add account "$ACCOUNT" Description="llmqfl test jobs" Organization=llmqfl >/dev/null
    sacctmgr -i -Q add user root Account="$ACCOUNT" DefaultAccount="$ACCOUNT" >/dev/null
    /usr/sbin/slurmctld
    wait_for 30 slurmctld scontrol ping
    /usr/sbin/slurmd
    wait_for 30 "slurmd (node $NODE)" node_idle
    log "running: partition $PARTITION, account $ACCOUNT, $(nproc) CPUs; for a client shell: source $DIR/etc/env"
}

node_idle() { sinfo -h -n "$NODE" -o %T | grep -qx idle; }

status() {
    [ -f "$CONF" ] || { echo "not running (no $CONF)"; return 1; }
    export SLURM_CONF=$CONF
    scontrol ping >/dev/null 2>&1 || { echo "slurmctld does not answer"; return 1; }
    sacctmgr -n list cluster >/dev/null 2>&1 || { echo "slurmdbd does not answer"; return 1; }
    sinfo -h -o "%P %a %D %T %c CPUs %m MB"
}

# kill_pidfile FILE: stop the daemon whose pid FILE names, waiting up to 10 s
kill_pidfile() {
    local file=$1 pid
    [ -f "$file" ] || return 0
    pid=$(cat "$file")
    kill "$pid" 2>/dev/null || return 0
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
}

stop() {
    [ -e "$DIR" ] || { log "not running"; return 0; }
    # jobs first (their steps belong to slurmd), then the daemons in the reverse order of start
    if [ -f "$CONF" ]; then SLURM_CONF=$CONF scancel --full -u root >/dev/null 2>&1 || true; fi
    for d in slurmd slurmctld slurmdbd mysqld munged; do kill_pidfile "$DIR/run/$d.pid"; done
    [ "$(readlink "$NODE_CONF" 2>/dev/null)" = "$DIR/etc" ] && rm -f "$NODE_CONF"
    rm -rf "$DIR" "$DIR.apt.log"
    log "stopped; $DIR removed"
}

case ${1:-} in
    start) start ;;
    stop) stop ;;
    status) status ;;
    env) [ -f "$DIR/etc/env" ] || die "not running"; cat "$DIR/etc/env" ;;
    *) echo "usage: $0 start|stop|status|env" >&2; exit 2 ;;
esac
