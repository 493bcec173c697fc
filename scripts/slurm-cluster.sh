#!/usr/bin/env bash
# A real one-node Slurm cluster on 127.0.0.1, for tests of the Slurm profile (profiles/ci-slurm).
#
#   scripts/slurm-cluster.sh start    install Slurm 22.05 + munge if missing (Debian, needs root),
#                                     write /etc/slurm/slurm.conf, start munged, slurmctld, slurmd
#                                     and wait until the node is idle; says so if already up
#   scripts/slurm-cluster.sh stop     cancel jobs, stop the daemons this script started (by PID)
#   scripts/slurm-cluster.sh status   sinfo + squeue, or "not running" (exit 3)
#
# State, spool, logs and PID files go in $DC2FLOW_SLURM_DIR (default /tmp/dc2flow-slurm).
# The config is written to /etc/slurm/slurm.conf itself, not only pointed to by SLURM_CONF:
# the slurm-jobstep executor strips SLURM_* variables before its inner srun, and a Slurm tool
# that finds no config asks DNS for the controller (configless mode), which must never happen.
# Accounting: slurmdbd on a private MariaDB (datadir and socket in the run dir, TCP on
# 127.0.0.1:$DB_PORT, a random password for slurmdbd's user, root only through the socket), so
# `sacct` works: job states and failure reasons, and the elapsed time and CPUs of every job.
set -euo pipefail

RUN_DIR=${DC2FLOW_SLURM_DIR:-/tmp/dc2flow-slurm}
CONF=/etc/slurm/slurm.conf
DBD_CONF=/etc/slurm/slurmdbd.conf
DB_PORT=${DC2FLOW_SLURM_DB_PORT:-33061}            # MariaDB for slurmdbd, on 127.0.0.1 only
DBD_PORT=6819
MARKER="# Written by dc2flow scripts/slurm-cluster.sh"
NODE=$(hostname -s)
START_TIMEOUT=${DC2FLOW_SLURM_START_TIMEOUT:-60}  # seconds to wait for the node to be idle
DAEMONS=(munged mariadbd slurmdbd slurmctld slurmd)  # start order; stop goes in reverse

say() { echo "slurm-cluster: $*"; }
die() { echo "slurm-cluster: error: $*" >&2; exit 1; }

pid_file() { echo "$RUN_DIR/pids/$1.pid"; }

alive() {  # process $1 exists and is not a zombie
    local stat
    stat=$(cat /proc/"$1"/stat 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ ${stat%% *} != Z ]]
}

# The PID recorded for daemon $1, if that process is alive and still is that daemon.
live_pid() {
    local file pid
    file=$(pid_file "$1")
    [[ -s $file ]] || return 1
    pid=$(<"$file")
    alive "$pid" && [[ $(cat /proc/"$pid"/comm 2>/dev/null) == "$1" ]] || return 1
    echo "$pid"
}

# The node answers and can take jobs (idle, or busy with earlier ones); after a start, only once
# the slurmd started at epoch ${SLURMD_SPAWNED:-0} has registered (the controller may not yet
# have noticed that an earlier slurmd died).
node_ready() {
    [[ $(sinfo -h -N -n "$NODE" -o %t 2>/dev/null) =~ ^(idle|mix|alloc|comp)$ ]] || return 1
    local started
    started=$(scontrol show node "$NODE" 2>/dev/null | grep -o 'SlurmdStartTime=[^ ]*' | cut -d= -f2)
    [[ $started =~ ^[0-9]{4}- ]] && (($(date -d "$started" +%s) >= ${SLURMD_SPAWNED:-0}))
}

munge_works() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

install_packages() {
    local missing=()
    for tool in slurmctld slurmd sinfo munged slurmdbd sacct mariadbd mariadb-install-db; do
        command -v "$tool" >/dev/null || missing+=("$tool")
    done
    ((${#missing[@]} == 0)) && return 0
    [[ $(id -u) == 0 ]] || die "Slurm is not installed (${missing[*]} missing) and installing needs root"
    command -v apt-get >/dev/null || die "Slurm is not installed (${missing[*]} missing) and apt-get is unavailable"
    say "installing slurmctld slurmd slurm-client munge slurmdbd mariadb-server (Debian)"
    # Without systemd the packages' postinst must not try to start the services: a
    # policy-rc.d that says 101 ("action forbidden") stops that; Debian's docker images ship one.
    local policy=/usr/sbin/policy-rc.d made_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && made_policy=1
    fi
    local apt=(env DEBIAN_FRONTEND=noninteractive apt-get -qq -o Dpkg::Use-Pty=0)
    local pkgs=(slurmctld slurmd slurm-client munge slurmdbd mariadb-server)
    local status=0
    "${apt[@]}" install -y --no-install-recommends "${pkgs[@]}" >"$RUN_DIR/log/apt.log" 2>&1 || {
        # a fresh machine has no package lists yet
        "${apt[@]}" update >>"$RUN_DIR/log/apt.log" 2>&1 &&
            "${apt[@]}" install -y --no-install-recommends "${pkgs[@]}" >>"$RUN_DIR/log/apt.log" 2>&1
    } || status=$?
    ((made_policy)) && rm -f "$policy"
    ((status == 0)) || { tail -n 20 "$RUN_DIR/log/apt.log" >&2; die "apt-get install failed (log: $RUN_DIR/log/apt.log)"; }
}

make_munge_key() {
    local key=/etc/munge/munge.key
    [[ -s $key ]] && return 0
    say "creating $key"
    mkdir -p /etc/munge
    if command -v mungekey >/dev/null; then
        mungekey --create --keyfile="$key"
    else
        dd if=/dev/urandom of="$key" bs=1024 count=1 status=none
    fi
    chown munge:munge "$key" 2>/dev/null || true
    chmod 400 "$key"
}

write_config() {
    local cpus mem_total mem
    cpus=$(nproc)
    mem_total=$(free -m | awk '/^Mem:/ {print $2}')
    mem=$((mem_total * 95 / 100))  # a bit under the total, or slurmd drains the node as "low RealMemory"
    if [[ -e $CONF && ! -L $CONF ]] && ! grep -qF "$MARKER" "$CONF"; then
        say "keeping the existing $CONF as $CONF.orig"
        mv "$CONF" "$CONF.orig"
    fi
    mkdir -p "$(dirname "$CONF")"
    rm -f "$CONF"  # replace a symlink rather than write through it
    cat >"$CONF.tmp" <<EOF
$MARKER for a one-node test cluster on 127.0.0.1;
# rewritten on each start (run dir: $RUN_DIR). See 'man slurm.conf'.
ClusterName=dc2flow
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=6817
SlurmdPort=6818
AuthType=auth/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$RUN_DIR/state
SlurmdSpoolDir=$RUN_DIR/spool
SlurmctldPidFile=$RUN_DIR/run/slurmctld.pid
SlurmdPidFile=$RUN_DIR/run/slurmd.pid
SlurmctldLogFile=$RUN_DIR/log/slurmctld.log
SlurmdLogFile=$RUN_DIR/log/slurmd.log
# No cgroups (containers, VMs without delegation): track processes by parent PID, bind nothing.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# A job without --mem gets this per CPU instead of the whole node.
DefMemPerCPU=1000
# Job accounting through slurmdbd (sacct); squeue also keeps a finished job for MinJobAge seconds.
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
# Memory is enforced without cgroups: poll every task's RSS each second, kill a job over its --mem
# (it ends FAILED, signal 9), so an under-estimated render is retried with more (tests/test_slurm_faults.py).
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=task=1
JobAcctGatherParams=OverMemoryKill
JobCompType=jobcomp/none
MinJobAge=300
# Short timeouts and intervals: a stuck test fails fast, a restarted node comes back by itself.
SlurmctldTimeout=10
SlurmdTimeout=10
MessageTimeout=5
InactiveLimit=0
KillWait=2
ReturnToService=2
MailProg=/bin/true
SchedulerParameters=bf_interval=1
# The node's real CPUs and memory; slurmd uses these, not its own probe of the topology.
SlurmdParameters=config_overrides
NodeName=$NODE NodeAddr=127.0.0.1 NodeHostname=$NODE CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    mv "$CONF.tmp" "$CONF"
    rm -f "$DBD_CONF"
    (umask 077 && cat >"$DBD_CONF.tmp" <<EOF
$MARKER: slurmdbd on 127.0.0.1, its MariaDB in $RUN_DIR/mysql.
AuthType=auth/munge
DbdAddr=127.0.0.1
DbdHost=$NODE
DbdPort=$DBD_PORT
SlurmUser=root
LogFile=$RUN_DIR/log/slurmdbd.log
PidFile=$RUN_DIR/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$(db_password)
StorageLoc=slurm_acct_db
EOF
    )
    mv "$DBD_CONF.tmp" "$DBD_CONF"  # mode 600: slurmdbd refuses a config others can read
}

# Start daemon $1 (a command line in the rest) in the background, recording its PID.
spawn() {
    local name=$1
    shift
    # 9>&-: the daemon must not inherit (and so hold forever) the lock on $RUN_DIR/lock
    setsid "$@" </dev/null >>"$RUN_DIR/log/$name.out" 2>&1 9>&- &
    echo $! >"$(pid_file "$name")"
}

start_munged() {
    if live_pid munged >/dev/null; then return 0; fi
    if munge_works; then
        say "using the munged already running on this machine"
        return 0
    fi
    make_munge_key
    mkdir -p /run/munge /var/lib/munge /var/log/munge
    if id munge >/dev/null 2>&1; then
        chown munge:munge /run/munge /var/lib/munge /var/log/munge /etc/munge/munge.key
        chmod 755 /run/munge
        spawn munged setpriv --reuid=munge --regid=munge --init-groups munged --foreground
    else
        spawn munged munged --foreground --force
    fi
    for _ in $(seq 50); do
        munge_works && return 0
        sleep 0.1
    done
    tail -n 20 /var/log/munge/munged.log "$RUN_DIR/log/munged.out" >&2 2>/dev/null || true
    die "munged did not start"
}

# The password of the database user slurmdbd connects as: random, made once, readable by root only.
db_password() {
    local file=$RUN_DIR/db.pass
    if [[ ! -s $file ]]; then
        (umask 077 && head -c 24 /dev/urandom | base64 | tr -d '/+=\n' >"$file")
    fi
    cat "$file"
}

sql() { mariadb --no-defaults --socket="$RUN_DIR/run/mysqld.sock" -uroot "$@"; }

# MariaDB for slurmdbd: a private datadir (mode 700), listening on 127.0.0.1:$DB_PORT and a socket
# in the run dir. Its root is reachable only as the OS root through the socket (unix_socket
# authentication); slurmdbd connects as the user "slurm" with the password of db_password, which
# may touch only the accounting database; the server reads and writes files nowhere else.
start_mariadb() {
    live_pid mariadbd >/dev/null && return 0
    local data=$RUN_DIR/mysql marker=$RUN_DIR/mysql/.dc2flow-accounts fresh=0
    if [[ ! -e $marker ]]; then  # none yet, or one set up otherwise: the test cluster's data is disposable
        rm -rf "$data"
        mariadb-install-db --no-defaults --user=root --datadir="$data" --auth-root-authentication-method=socket \
            --skip-test-db >"$RUN_DIR/log/mariadb-install.log" 2>&1 ||
            { tail -n 20 "$RUN_DIR/log/mariadb-install.log" >&2; die "mariadb-install-db failed"; }
        chmod 700 "$data"
        fresh=1
    fi
    mkdir -p "$RUN_DIR/mysql-files" && chmod 700 "$RUN_DIR/mysql-files"
    spawn mariadbd mariadbd --no-defaults --user=root --datadir="$data" --secure-file-priv="$RUN_DIR/mysql-files" \
        --socket="$RUN_DIR/run/mysqld.sock" --pid-file="$RUN_DIR/run/mysqld.pid" --bind-address=127.0.0.1 \
        --port="$DB_PORT" --skip-name-resolve --log-error="$RUN_DIR/log/mariadb.err" --innodb-buffer-pool-size=32M
    local up=0
    for _ in $(seq 100); do
        sql -e "select 1" >/dev/null 2>&1 && { up=1; break; }
        live_pid mariadbd >/dev/null || break
        sleep 0.1
    done
    ((up)) || { tail -n 20 "$RUN_DIR/log/mariadb.err" >&2 2>/dev/null || true; die "mariadbd did not start"; }
    if ((fresh)); then
        sql -e "CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$(db_password)';
                GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';" || die "cannot create the database user"
        touch "$marker"
    fi
}

start_slurmdbd() {
    live_pid slurmdbd >/dev/null || spawn slurmdbd slurmdbd -D
    for _ in $(seq 100); do
        sacctmgr -n list cluster >/dev/null 2>&1 && break
        live_pid slurmdbd >/dev/null || { show_logs; die "slurmdbd exited during start-up"; }
        sleep 0.1
    done
    sacctmgr -n list cluster >/dev/null 2>&1 || { show_logs; die "slurmdbd does not answer"; }
    # slurmctld registers with the cluster's record: create it once
    [[ -n $(sacctmgr -n -P list cluster dc2flow format=cluster 2>/dev/null) ]] ||
        sacctmgr -i add cluster dc2flow >/dev/null
}

show_logs() {
    local f
    for f in "$RUN_DIR"/log/{slurmctld.log,slurmd.log,slurmdbd.log,mariadb.err,slurmctld.out,slurmd.out,slurmdbd.out}; do
        [[ -s $f ]] && { echo "--- tail of $f" >&2; tail -n 15 "$f" >&2; }
    done
    return 0
}

cmd_start() {
    mkdir -p "$RUN_DIR"/{state,spool,log,run,pids}
    exec 9>"$RUN_DIR/lock"
    flock -w 120 9 || die "another start or stop holds $RUN_DIR/lock"
    install_packages
    local running=0
    live_pid slurmctld >/dev/null && live_pid slurmd >/dev/null && live_pid slurmdbd >/dev/null && munge_works &&
        running=1
    if ((running)) && node_ready; then
        say "already running (node $NODE, run dir $RUN_DIR)"
        return 0
    fi
    if ! live_pid slurmctld >/dev/null && ! live_pid slurmd >/dev/null && ! live_pid slurmdbd >/dev/null; then
        write_config  # only while no daemon of ours reads it
    fi
    start_munged
    start_mariadb
    start_slurmdbd
    live_pid slurmctld >/dev/null || spawn slurmctld slurmctld -D
    if ! live_pid slurmd >/dev/null; then
        SLURMD_SPAWNED=$(date +%s)
        spawn slurmd slurmd -D -N "$NODE"
    fi
    local t0=$SECONDS
    until node_ready; do
        for d in slurmctld slurmd; do
            live_pid "$d" >/dev/null || { show_logs; die "$d exited during start-up"; }
        done
        if ((SECONDS - t0 >= START_TIMEOUT)); then
            sinfo -N >&2 2>/dev/null || true
            show_logs
            die "node $NODE not idle after ${START_TIMEOUT}s"
        fi
        # a node left down by an earlier run comes back with ReturnToService=2; make sure
        scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true
        sleep 0.2
    done
    say "running: node $NODE ($(nproc) CPUs), config $CONF, run dir $RUN_DIR"
}

stop_pid() {  # TERM, then KILL after 10 s, the daemon $1 if this script started it
    local pid
    pid=$(live_pid "$1") || { rm -f "$(pid_file "$1")"; return 0; }
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do
        alive "$pid" || break
        sleep 0.1
    done
    alive "$pid" && kill -KILL "$pid" 2>/dev/null
    rm -f "$(pid_file "$1")"
    say "stopped $1 (pid $pid)"
}

cmd_stop() {
    [[ -d $RUN_DIR/pids ]] || { say "not running"; return 0; }
    exec 9>"$RUN_DIR/lock"
    flock -w 120 9 || die "another start or stop holds $RUN_DIR/lock"
    if live_pid slurmctld >/dev/null; then
        # jobs left over (a killed test) would outlive slurmd in their slurmstepd
        local jobs
        jobs=$(squeue -h -o %i 2>/dev/null | tr '\n' ' ')
        if [[ -n ${jobs// /} ]]; then
            say "cancelling jobs $jobs"
            # shellcheck disable=SC2086
            scancel $jobs 2>/dev/null || true
            for _ in $(seq 50); do
                [[ -z $(squeue -h -t running,completing -o %i 2>/dev/null) ]] && break
                sleep 0.2
            done
        fi
    fi
    local i
    for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do stop_pid "${DAEMONS[i]}"; done
}

cmd_status() {
    local d pid up=0
    for d in "${DAEMONS[@]}"; do
        if pid=$(live_pid "$d"); then
            echo "$d: pid $pid"
            up=1
        fi
    done
    if ((up)) && live_pid slurmctld >/dev/null; then
        sinfo -N -l
        squeue
        return 0
    fi
    echo "not running"
    return 3
}

case ${1:-} in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    *) echo "usage: $0 {start|stop|status}" >&2; exit 2 ;;
esac
