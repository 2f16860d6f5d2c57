#!/usr/bin/env bash
# Bring up / tear down a throw-away one-node SLURM cluster on localhost for
# CI tests (real slurmctld + slurmd + slurmdbd/MariaDB accounting + munge).
#
#   tests/slurm/cluster.sh start  STATEDIR   # install (if needed), configure, start, wait for idle node
#   tests/slurm/cluster.sh stop   STATEDIR   # cancel jobs, stop every daemon by pid, restore /etc/slurm/slurm.conf
#   tests/slurm/cluster.sh status STATEDIR   # sinfo / daemon pids
#   tests/slurm/cluster.sh env    STATEDIR   # print the `export ...` lines (same as STATEDIR/env.sh)
#
# `start` prints `export SLURM_CONF=...` on stdout (progress goes to stderr), so
#   eval "$(tests/slurm/cluster.sh start /tmp/slurm)"
# works; the same line is written to STATEDIR/env.sh.
#
# Everything (config, munge key + socket, MariaDB datadir + socket, spool,
# logs, pid files) lives under STATEDIR.  The only global changes are
#   * apt-get install of missing packages (see README.md),
#   * /etc/slurm/slurm.conf -> STATEDIR/etc/slurm.conf symlink while the
#     cluster runs (an existing file is moved aside and restored on stop),
#   * TCP ports 6817/6818/6819 on localhost (override with ALFLOW_SLURM_*_PORT).
# The daemons run as root.  Needs root.
#
# Environment knobs (all optional):
#   ALFLOW_SLURM_ACCOUNTING=1|0   run slurmdbd + MariaDB (default 1); 0 = no sacct
#   ALFLOW_SLURM_ACCOUNTS="testacct otheracct"  accounts created for the user(s)
#   ALFLOW_SLURM_USERS="root"     users given associations (default: root + $SUDO_USER)
#   ALFLOW_SLURM_CPUS=N           CPUs the node advertises (default max(nproc,10); may
#                                 exceed the real count: SlurmdParameters=config_overrides)
#   ALFLOW_SLURM_MEM_MB=N         RealMemory of the node (default 3/4 of the machine)
#   ALFLOW_SLURM_FAKE_GPUS=N      fake gres/gpu count on the node (default 2, 0 = none)
#   ALFLOW_SLURM_CTLD_PORT / ALFLOW_SLURM_SLURMD_PORT / ALFLOW_SLURM_DBD_PORT
#   ALFLOW_SLURM_TIMEOUT=60       seconds to wait for each daemon / the idle node
#   ALFLOW_SLURM_DEBUG=info       SlurmctldDebug/SlurmdDebug (e.g. debug2)
#   ALFLOW_SLURM_KEEP_ON_FAILURE=1  leave daemons running when `start` fails
set -euo pipefail

PROG=$(basename "$0")
log() { printf '[%s %s] %s\n' "$PROG" "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

usage() {
    sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

[[ $# -eq 2 ]] || usage
ACTION=$1
STATEDIR=$(realpath -m -- "$2")

ACCOUNTING=${ALFLOW_SLURM_ACCOUNTING:-1}
ACCOUNTS=${ALFLOW_SLURM_ACCOUNTS:-testacct otheracct}
USERS=${ALFLOW_SLURM_USERS:-root${SUDO_USER:+ $SUDO_USER}}
CTLD_PORT=${ALFLOW_SLURM_CTLD_PORT:-6817}
SLURMD_PORT=${ALFLOW_SLURM_SLURMD_PORT:-6818}
DBD_PORT=${ALFLOW_SLURM_DBD_PORT:-6819}
TIMEOUT=${ALFLOW_SLURM_TIMEOUT:-60}
FAKE_GPUS=${ALFLOW_SLURM_FAKE_GPUS:-2}
CLUSTER=alflowtest

ETC=$STATEDIR/etc
RUN=$STATEDIR/run
LOGDIR=$STATEDIR/log
SPOOL=$STATEDIR/spool
MUNGEDIR=$STATEDIR/munge
DBDIR=$STATEDIR/mysql
CONF=$ETC/slurm.conf
MUNGE_SOCKET=$MUNGEDIR/munge.socket
MYSQL_SOCKET=$DBDIR/mysqld.sock
GLOBAL_CONF=/etc/slurm/slurm.conf
GLOBAL_BACKUP=/etc/slurm/slurm.conf.alflow-backup

# stop/status/env follow the mode the cluster in STATEDIR was configured with
if [[ $ACTION != start && -f $CONF ]]; then
    if grep -q '^AccountingStorageType=accounting_storage/slurmdbd' "$CONF"; then
        ACCOUNTING=1
    else
        ACCOUNTING=0
    fi
fi

# name -> expected /proc/PID/comm, in start order
DAEMONS_ACCT=(munged mariadbd slurmdbd slurmctld slurmd)
DAEMONS_NOACCT=(munged slurmctld slurmd)
daemons() { if [[ $ACCOUNTING == 1 ]]; then echo "${DAEMONS_ACCT[@]}"; else echo "${DAEMONS_NOACCT[@]}"; fi; }
pidfile() { echo "$RUN/$1.pid"; }
logfile() { echo "$LOGDIR/$1.log"; }

# pid of daemon $1 if it is alive and really is that program, else empty
live_pid() {
    local f pid comm
    f=$(pidfile "$1")
    [[ -s $f ]] || return 0
    pid=$(tr -dc '0-9' <"$f")
    [[ -n $pid && -r /proc/$pid/comm ]] || return 0
    is_alive "$pid" "$1" && echo "$pid"
    return 0
}

# is_alive PID NAME: process exists, is called NAME and is not a zombie (the
# init of a container may be slow to reap orphaned daemons)
is_alive() {
    [[ -r /proc/$1/stat && $(cat "/proc/$1/comm" 2>/dev/null || true) == "$2" ]] || return 1
    local st
    st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)
    [[ -n $st && $st != Z && $st != X ]]
}

export_lines() { echo "export SLURM_CONF=$CONF"; }

slurm_env() { export SLURM_CONF=$CONF; }

tail_logs() {
    local f
    for f in "$@"; do
        [[ -f $f ]] || continue
        echo "----- tail -n 30 $f -----" >&2
        tail -n 30 "$f" >&2 || true
    done
}

fail_start() {
    log "ERROR: $*"
    tail_logs "$LOGDIR"/*.log
    if [[ ${ALFLOW_SLURM_KEEP_ON_FAILURE:-0} != 1 ]]; then
        log "stopping what was started (set ALFLOW_SLURM_KEEP_ON_FAILURE=1 to keep it)"
        do_stop || true
    fi
    exit 1
}

# daemon_died NAME: its pid file exists but the process is gone
daemon_died() {
    [[ -s $(pidfile "$1") && -z $(live_pid "$1") ]]
}

# wait_for DESCRIPTION DAEMON COMMAND... : poll COMMAND every 0.5 s up to
# $TIMEOUT s; give up early if DAEMON (a name, or "-") died.
wait_for() {
    local what=$1 daemon=$2; shift 2
    local end=$((SECONDS + TIMEOUT))
    until "$@" >/dev/null 2>&1; do
        if [[ $daemon != - ]] && daemon_died "$daemon"; then
            fail_start "$daemon exited while waiting for $what"
        fi
        if ((SECONDS >= end)); then
            fail_start "timed out after ${TIMEOUT}s waiting for $what"
        fi
        sleep 0.5
    done
}

# ---------------------------------------------------------------- install ---
ensure_packages() {
    local missing=()
    command -v slurmctld >/dev/null || missing+=(slurmctld)
    command -v slurmd >/dev/null || missing+=(slurmd)
    command -v sbatch >/dev/null || missing+=(slurm-client)
    command -v munged >/dev/null || missing+=(munge)
    # srun's PMIx plugin dlopens the unversioned libpmix.so (only in -dev):
    # without it Open MPI programs (CP2K) cannot be launched with plain srun.
    compgen -G '/usr/lib/*/libpmix.so' >/dev/null || missing+=(libpmix-dev)
    command -v mpirun >/dev/null || missing+=(openmpi-bin)
    if [[ $ACCOUNTING == 1 ]]; then
        command -v slurmdbd >/dev/null || missing+=(slurmdbd)
        compgen -G '/usr/lib/*/slurm-wlm/accounting_storage_mysql.so' >/dev/null ||
            missing+=(slurm-wlm-mysql-plugin)
        { command -v mariadbd && command -v mariadb-install-db; } >/dev/null ||
            missing+=(mariadb-server)
    fi
    ((${#missing[@]})) || return 0
    [[ $(id -u) == 0 ]] || die "missing packages (${missing[*]}) and not root"
    log "installing missing packages: ${missing[*]}"
    # Keep the packages' init scripts from starting system-wide daemons
    # (munge, mariadb, slurm*) during installation: temporary policy-rc.d.
    local made_policy=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        made_policy=1
    fi
    local rc=0
    {
        export DEBIAN_FRONTEND=noninteractive
        apt-get update >&2 && apt-get install -y --no-install-recommends "${missing[@]}" >&2
    } || rc=$?
    ((made_policy)) && rm -f /usr/sbin/policy-rc.d
    ((rc == 0)) || die "apt-get install ${missing[*]} failed"
}

# ----------------------------------------------------------------- config ---
write_configs() {
    local host cpus mem_mb
    host=$(hostname -s)
    cpus=${ALFLOW_SLURM_CPUS:-$(($(nproc) > 10 ? $(nproc) : 10))}
    mem_mb=${ALFLOW_SLURM_MEM_MB:-$(($(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo) * 3 / 4))}

    mkdir -p "$ETC" "$RUN" "$LOGDIR" "$SPOOL/ctld" "$SPOOL/d" "$MUNGEDIR"
    chmod 755 "$MUNGEDIR" # socket must be reachable by non-root clients too
    : >"$ETC/plugstack.conf"

    local gres_node="" gres_types="" tres=""
    if ((FAKE_GPUS > 0)); then
        gres_types="GresTypes=gpu"
        gres_node="Gres=gpu:$FAKE_GPUS"
        tres="AccountingStorageTRES=gres/gpu"
        # Fake GPUs: slurmd drops a gres/gpu without File= ("Removing file-less
        # GPU"), so each fake GPU is a symlink to /dev/null (a char device).
        # Nothing opens them (TaskPlugin=task/none, no cgroup device limits).
        mkdir -p "$STATEDIR/dev"
        : >"$ETC/gres.conf"
        local i
        for ((i = 0; i < FAKE_GPUS; i++)); do
            ln -sfn /dev/null "$STATEDIR/dev/fakegpu$i"
            echo "NodeName=$host Name=gpu File=$STATEDIR/dev/fakegpu$i" >>"$ETC/gres.conf"
        done
    else
        : >"$ETC/gres.conf"
    fi

    local acct
    if [[ $ACCOUNTING == 1 ]]; then
        acct="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$DBD_PORT
# munge socket of *this* cluster (slurmctld -> slurmdbd authentication)
AccountingStoragePass=$MUNGE_SOCKET
AccountingStorageEnforce=associations
# keep the --comment (the executor plugin puts rule_<name> there) in sacct
AccountingStoreFlags=job_comment
$tres
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30"
    else
        acct="AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none"
    fi

    cat >"$CONF" <<EOF
# Generated by tests/slurm/cluster.sh -- throw-away single-node test cluster.
ClusterName=$CLUSTER
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
CredType=cred/munge
StateSaveLocation=$SPOOL/ctld
SlurmdSpoolDir=$SPOOL/d
SlurmctldPidFile=$(pidfile slurmctld)
SlurmdPidFile=$(pidfile slurmd)
SlurmctldLogFile=$(logfile slurmctld)
SlurmdLogFile=$(logfile slurmd)
SlurmctldDebug=${ALFLOW_SLURM_DEBUG:-info}
SlurmdDebug=${ALFLOW_SLURM_DEBUG:-info}
PlugStackConfig=$ETC/plugstack.conf
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=pmix
SwitchType=switch/none
SchedulerType=sched/backfill
# start jobs submitted in a burst at once (default: up to 3 s later)
SchedulerParameters=batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SlurmdParameters=config_overrides
DefMemPerCPU=256
ReturnToService=2
# finished jobs stay visible to scontrol/squeue for an hour (tests query them after long
# campaigns; a loaded machine took 13 min for one)
MinJobAge=3600
# kill exactly at the time limit, quickly
OverTimeLimit=0
KillWait=2
InactiveLimit=0
Waittime=0
MailProg=/bin/true
$gres_types
$acct
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb $gres_node State=UNKNOWN
PartitionName=cpu Nodes=$host Default=YES DefaultTime=01:00:00 MaxTime=7-00:00:00 State=UP
PartitionName=gpu Nodes=$host Default=NO DefaultTime=01:00:00 MaxTime=7-00:00:00 State=UP
EOF

    cat >"$ETC/cgroup.conf" <<EOF
# not used (ProctrackType=proctrack/linuxproc, TaskPlugin=task/none)
CgroupPlugin=autodetect
EOF

    if [[ $ACCOUNTING == 1 ]]; then
        mkdir -p "$DBDIR"
        cat >"$ETC/slurmdbd.conf" <<EOF
# Generated by tests/slurm/cluster.sh
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
DbdHost=localhost
DbdPort=$DBD_PORT
SlurmUser=root
DebugLevel=info
LogFile=$(logfile slurmdbd)
PidFile=$(pidfile slurmdbd)
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=slurmtest
StorageLoc=slurm_acct_db
EOF
        chmod 600 "$ETC/slurmdbd.conf"
    fi
    export_lines >"$STATEDIR/env.sh"
}

# ------------------------------------------------------ /etc/slurm symlink ---
# The executor plugin's job step strips every SLURM_* variable (SLURM_CONF
# included) before its inner `srun`, which then reads the compiled-in
# /etc/slurm/slurm.conf.  Hence the symlink.
check_global_conf() {
    local target
    if [[ -L $GLOBAL_CONF ]]; then
        target=$(readlink "$GLOBAL_CONF")
        if [[ $target != "$CONF" && $target == */etc/slurm.conf ]] &&
            [[ -n $(live_other "${target%/etc/slurm.conf}") ]]; then
            die "$GLOBAL_CONF points to another running test cluster ($target); stop it first"
        fi
    fi
    return 0
}

link_global_conf() {
    mkdir -p /etc/slurm
    check_global_conf
    if [[ -L $GLOBAL_CONF ]]; then
        local target
        target=$(readlink "$GLOBAL_CONF")
        if [[ $target != "$CONF" ]]; then
            log "replacing stale symlink $GLOBAL_CONF -> $target"
            rm -f "$GLOBAL_CONF"
        fi
    elif [[ -e $GLOBAL_CONF ]]; then
        [[ -e $GLOBAL_BACKUP ]] && die "$GLOBAL_BACKUP already exists; refusing to overwrite it"
        log "moving existing $GLOBAL_CONF to $GLOBAL_BACKUP (restored on stop)"
        mv "$GLOBAL_CONF" "$GLOBAL_BACKUP"
    fi
    ln -sfn "$CONF" "$GLOBAL_CONF"
}

# does the cluster in $1 have a live slurmctld? (prints pid)
live_other() {
    local f=$1/run/slurmctld.pid pid
    [[ -s $f ]] || return 0
    pid=$(tr -dc '0-9' <"$f")
    [[ -n $pid ]] && is_alive "$pid" slurmctld && echo "$pid"
    return 0
}

unlink_global_conf() {
    if [[ -L $GLOBAL_CONF && $(readlink "$GLOBAL_CONF") == "$CONF" ]]; then
        rm -f "$GLOBAL_CONF"
        if [[ -e $GLOBAL_BACKUP ]]; then
            mv "$GLOBAL_BACKUP" "$GLOBAL_CONF"
            log "restored $GLOBAL_CONF from $GLOBAL_BACKUP"
        fi
    fi
}

# ----------------------------------------------------------------- daemons ---
start_munge() {
    if [[ ! -s $MUNGEDIR/munge.key ]]; then
        (umask 077 && dd if=/dev/urandom of="$MUNGEDIR/munge.key" bs=1024 count=1 status=none)
    fi
    chmod 600 "$MUNGEDIR/munge.key"
    log "starting munged"
    munged --force --key-file="$MUNGEDIR/munge.key" --socket="$MUNGE_SOCKET" \
        --pid-file="$(pidfile munged)" --log-file="$(logfile munged)" \
        --seed-file="$MUNGEDIR/munged.seed" </dev/null >>"$(logfile munged)" 2>&1 ||
        fail_start "munged failed to start"
    wait_for "munge credentials" munged bash -c \
        "munge -n --socket='$MUNGE_SOCKET' | unmunge --socket='$MUNGE_SOCKET'"
}

start_mariadb() {
    local init=0
    if [[ ! -d $DBDIR/data/mysql ]]; then
        init=1
        log "initialising MariaDB datadir $DBDIR/data"
        mariadb-install-db --no-defaults --user=root --datadir="$DBDIR/data" \
            --auth-root-authentication-method=socket --skip-test-db \
            >>"$(logfile mariadb-install)" 2>&1 ||
            fail_start "mariadb-install-db failed (see $(logfile mariadb-install))"
    fi
    log "starting mariadbd"
    # --no-defaults: ignore /etc/mysql/*; unix socket only, no TCP port.
    setsid mariadbd --no-defaults --user=root --datadir="$DBDIR/data" \
        --socket="$MYSQL_SOCKET" --pid-file="$(pidfile mariadbd)" \
        --log-error="$(logfile mariadbd)" --skip-networking --skip-log-bin \
        --innodb-use-native-aio=0 --innodb-buffer-pool-size=64M \
        --innodb-log-file-size=16M --innodb-flush-log-at-trx-commit=2 \
        </dev/null >>"$(logfile mariadbd)" 2>&1 &
    local mpid=$! end=$((SECONDS + TIMEOUT))
    until mariadb-admin --no-defaults --socket="$MYSQL_SOCKET" ping >/dev/null 2>&1; do
        kill -0 "$mpid" 2>/dev/null || fail_start "mariadbd exited during startup"
        ((SECONDS < end)) || fail_start "timed out after ${TIMEOUT}s waiting for mariadbd"
        sleep 0.5
    done
    # pid file is written a moment after the socket accepts connections
    wait_for "mariadbd pid file" - test -s "$(pidfile mariadbd)"
    if ((init)) || ! mariadb --no-defaults --socket="$MYSQL_SOCKET" -uroot -N \
        -e "SELECT 1 FROM mysql.user WHERE user='slurm'" | grep -q 1; then
        mariadb --no-defaults --socket="$MYSQL_SOCKET" -uroot -e "
            CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurmtest';
            GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
            FLUSH PRIVILEGES;" || fail_start "could not create the MariaDB user"
    fi
}

start_slurmdbd() {
    log "starting slurmdbd"
    # slurmdbd reads slurmdbd.conf next to $SLURM_CONF; MYSQL_UNIX_PORT points
    # the MariaDB client library at our socket (StorageHost=localhost).
    MYSQL_UNIX_PORT=$MYSQL_SOCKET slurmdbd </dev/null >>"$(logfile slurmdbd)" 2>&1 ||
        fail_start "slurmdbd failed to start"
    wait_for "slurmdbd" slurmdbd sacctmgr -n show cluster
}

setup_accounts() {
    local a u
    if ! sacctmgr -n -P show cluster format=cluster | grep -qx "$CLUSTER"; then
        sacctmgr -i add cluster "$CLUSTER" >&2 || fail_start "sacctmgr add cluster failed"
    fi
    for a in $ACCOUNTS; do
        if ! sacctmgr -n -P show account "$a" format=account | grep -qx "$a"; then
            sacctmgr -i add account "$a" Cluster="$CLUSTER" \
                Description="alflow test" Organization=alflow >&2 ||
                fail_start "sacctmgr add account $a failed"
        fi
    done
    local first=${ACCOUNTS%% *}
    for u in $USERS; do
        for a in $ACCOUNTS; do
            if ! sacctmgr -n -P show assoc cluster="$CLUSTER" user="$u" account="$a" \
                format=account | grep -qx "$a"; then
                sacctmgr -i add user "$u" Account="$a" Cluster="$CLUSTER" >&2 ||
                    fail_start "sacctmgr add user $u account $a failed"
            fi
        done
        sacctmgr -i modify user "$u" set DefaultAccount="$first" >/dev/null 2>&1 || true
    done
}

start_slurmctld() {
    log "starting slurmctld"
    slurmctld </dev/null >>"$(logfile slurmctld)" 2>&1 || fail_start "slurmctld failed to start"
    wait_for "slurmctld" slurmctld bash -c "scontrol ping | grep -q 'is UP'"
}

start_slurmd() {
    log "starting slurmd"
    slurmd </dev/null >>"$(logfile slurmd)" 2>&1 || fail_start "slurmd failed to start"
}

wait_node_idle() {
    local end=$((SECONDS + TIMEOUT)) st host
    host=$(hostname -s)
    while :; do
        st=$(sinfo -h -n "$host" -o '%T' 2>/dev/null | sort -u | tr '\n' ' ' || true)
        case $st in
            "idle ") return 0 ;;
            *drain* | *down*)
                # left over from an earlier run of this STATEDIR: resume once
                scontrol update nodename="$host" state=resume >/dev/null 2>&1 || true ;;
        esac
        daemon_died slurmd && fail_start "slurmd exited while waiting for the node"
        ((SECONDS < end)) || fail_start "node $host not idle after ${TIMEOUT}s (state: '$st')"
        sleep 0.5
    done
}

# ------------------------------------------------------------------ actions ---
all_running() {
    local d
    for d in $(daemons); do [[ -n $(live_pid "$d") ]] || return 1; done
}

any_running() {
    local d
    for d in $(daemons) mariadbd slurmdbd; do [[ -n $(live_pid "$d") ]] && return 0; done
    return 1
}

do_start() {
    local t0=$SECONDS start_ns
    start_ns=$(date +%s%N)
    [[ $(id -u) == 0 ]] || die "must run as root (daemons run as root, /etc/slurm symlink)"
    if ((${#STATEDIR} > 80)); then
        die "STATEDIR path too long for unix sockets (${#STATEDIR} > 80 chars): $STATEDIR"
    fi
    slurm_env
    if all_running; then
        if [[ -L $GLOBAL_CONF && $(readlink "$GLOBAL_CONF") == "$CONF" ]] &&
            sinfo -h >/dev/null 2>&1; then
            log "cluster in $STATEDIR is already running"
            export_lines
            return 0
        fi
    fi
    if any_running; then
        die "daemons of $STATEDIR are running, but not the full set for accounting=$ACCOUNTING; run '$0 stop $STATEDIR' first"
    fi
    check_global_conf
    ensure_packages
    mkdir -p "$STATEDIR"
    write_configs
    link_global_conf
    rm -f "$RUN"/*.pid
    start_munge
    if [[ $ACCOUNTING == 1 ]]; then
        start_mariadb
        start_slurmdbd
        setup_accounts
    fi
    start_slurmctld
    start_slurmd
    wait_node_idle
    local ms=$((($(date +%s%N) - start_ns) / 1000000))
    log "cluster up in $((ms / 1000)).$(printf '%03d' $((ms % 1000)))s (accounting=$ACCOUNTING); env in $STATEDIR/env.sh"
    echo "$ms" >"$RUN/start_ms"
    sinfo >&2
    export_lines
}

# stop_daemon NAME: SIGTERM by pid file, wait, SIGKILL after 30 s
stop_daemon() {
    local name=$1 pid i
    pid=$(live_pid "$name")
    if [[ -z $pid ]]; then
        rm -f "$(pidfile "$name")"
        return 0
    fi
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 300; i++)); do
        is_alive "$pid" "$name" || break
        sleep 0.1
    done
    if is_alive "$pid" "$name"; then
        log "$name did not exit after 30s, sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.5
    fi
    rm -f "$(pidfile "$name")"
}

# slurmstepd processes belonging to this cluster (they keep a socket in our spool)
our_stepds() {
    local p
    for p in /proc/[0-9]*; do
        [[ $(cat "$p/comm" 2>/dev/null || true) == slurmstepd ]] || continue
        if ls -l "$p/fd" 2>/dev/null | grep -q -- "$SPOOL/"; then
            echo "${p#/proc/}"
        fi
    done
}

do_stop() {
    slurm_env
    # 1. cancel jobs so that no slurmstepd / job processes outlive slurmd
    if [[ -n $(live_pid slurmctld) ]]; then
        local ids i
        ids=$(squeue -h -o '%A' -t PD,R,CG,S,CF 2>/dev/null || true)
        if [[ -n $ids ]]; then
            log "cancelling jobs: $(echo $ids)"
            # shellcheck disable=SC2086
            scancel $ids 2>/dev/null || true
            for ((i = 0; i < 60; i++)); do
                [[ -z $(squeue -h -o '%A' -t PD,R,CG,S,CF 2>/dev/null || true) ]] && break
                sleep 0.5
            done
        fi
    fi
    # 2. daemons in reverse start order
    local d
    for d in slurmd slurmctld slurmdbd mariadbd munged; do
        stop_daemon "$d"
    done
    # 3. stray job step daemons of this cluster (only if jobs could not be cancelled)
    local p
    for p in $(our_stepds); do
        log "killing leftover slurmstepd pid $p"
        kill -KILL "$p" 2>/dev/null || true
    done
    unlink_global_conf
    log "cluster in $STATEDIR stopped"
}

do_status() {
    slurm_env
    local d pid rc=0
    for d in $(daemons); do
        pid=$(live_pid "$d")
        printf '%-10s %s\n' "$d" "${pid:-not running}"
        [[ -n $pid ]] || rc=1
    done
    echo "SLURM_CONF=$CONF"
    sinfo || rc=1
    return $rc
}

case $ACTION in
    start) do_start ;;
    stop) do_stop ;;
    status) do_status ;;
    env) export_lines ;;
    *) usage ;;
esac
