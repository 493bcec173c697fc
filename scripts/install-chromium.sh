#!/usr/bin/env bash
# Install Debian's chromium for the viewer's browser test (tests/test_viewer.py), if it is missing.
# Idempotent: does nothing when /usr/bin/chromium exists. Needs root and apt-get (a Debian machine).
# Playwright's own browser download is not used: the test drives this chromium through Playwright.
# Run it with --headless --no-sandbox --disable-gpu --disable-quic --no-first-run
# --disable-background-networking --disable-component-update --disable-sync and a fresh
# --user-data-dir, or it hangs on a closed network.
set -euo pipefail

CHROMIUM=/usr/bin/chromium
LOG=${TMPDIR:-/tmp}/install-chromium.log

say() { echo "install-chromium: $*"; }
die() { echo "install-chromium: error: $*" >&2; exit 1; }

if [[ -x $CHROMIUM ]]; then
    say "$CHROMIUM present: $("$CHROMIUM" --version 2>/dev/null || echo 'version unknown')"
    exit 0
fi
[[ $(id -u) == 0 ]] || die "chromium is not installed and installing it needs root (apt-get install chromium)"
command -v apt-get >/dev/null || die "chromium is not installed and apt-get is unavailable; install Debian's chromium"
say "installing chromium (Debian)"
apt=(env DEBIAN_FRONTEND=noninteractive apt-get -qq -o Dpkg::Use-Pty=0)
status=0
"${apt[@]}" install -y --no-install-recommends chromium >"$LOG" 2>&1 || {
    # a fresh machine has no package lists yet
    "${apt[@]}" update >>"$LOG" 2>&1 && "${apt[@]}" install -y --no-install-recommends chromium >>"$LOG" 2>&1
} || status=$?
((status == 0)) || { tail -n 20 "$LOG" >&2; die "apt-get install failed (log: $LOG)"; }
[[ -x $CHROMIUM ]] || die "apt-get installed chromium but $CHROMIUM is missing"
say "installed: $("$CHROMIUM" --version 2>/dev/null || true)"
