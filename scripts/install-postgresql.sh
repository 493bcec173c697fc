#!/usr/bin/env bash
# Install PostgreSQL's server binaries (Debian's postgresql package) for tests/test_registry.py,
# which starts a throwaway cluster with them; does nothing if /usr/lib/postgresql/*/bin/initdb exists.
# Needs root and apt-get (as scripts/slurm-cluster.sh does for Slurm); .ci/run calls it.
set -euo pipefail
say() { echo "install-postgresql: $*"; }
die() { echo "install-postgresql: error: $*" >&2; exit 1; }

compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null && { say "already installed"; exit 0; }
[[ $(id -u) == 0 ]] || die "PostgreSQL is not installed and installing needs root"
command -v apt-get >/dev/null || die "PostgreSQL is not installed and apt-get is unavailable"
log=$(mktemp /tmp/install-postgresql.XXXXXX.log)
# Without systemd the package's postinst must not start the server (policy-rc.d says 101), nor
# create the default cluster (create_main_cluster=false): the test makes its own.
policy=/usr/sbin/policy-rc.d made_policy=0
if [[ ! -e $policy ]]; then printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && made_policy=1; fi
mkdir -p /etc/postgresql-common
[[ -e /etc/postgresql-common/createcluster.conf ]] || echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.conf
apt=(env DEBIAN_FRONTEND=noninteractive apt-get -qq -o Dpkg::Use-Pty=0)
status=0
say "installing postgresql (Debian; log $log)"
"${apt[@]}" install -y --no-install-recommends postgresql >"$log" 2>&1 || {
    "${apt[@]}" update >>"$log" 2>&1 && "${apt[@]}" install -y --no-install-recommends postgresql >>"$log" 2>&1
} || status=$?
((made_policy)) && rm -f "$policy"
((status == 0)) || { tail -n 20 "$log" >&2; die "apt-get install postgresql failed (log: $log)"; }
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || die "installed, but no /usr/lib/postgresql/*/bin/initdb"
say "installed $(ls -d /usr/lib/postgresql/*/bin | tail -n 1)"
