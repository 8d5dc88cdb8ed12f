#!/usr/bin/env bash
# Make sure the `prometheus` and `promtool` binaries are on PATH (the dashboard rule tests and
# the live Prometheus integration test need them). Idempotent: does nothing when both exist.
#
# On Debian/Ubuntu it installs the distribution's `prometheus` package (which ships both
# binaries) without recommended packages, and makes sure no Prometheus daemon is left running
# from the install: the tests start their own server on a free loopback port, and a packaged
# daemon would hold port 9090 and scrape in the background.
set -euo pipefail

say() { printf 'ensure-prometheus: %s\n' "$*"; }

if command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; then
    say "found $(command -v prometheus) and $(command -v promtool): nothing to do"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    say "prometheus/promtool missing and apt-get not available:" >&2
    say "install Prometheus 2.x so that 'prometheus' and 'promtool' are on PATH" >&2
    exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        say "installing needs root (or sudo)" >&2
        exit 1
    fi
fi

# Keep the package's maintainer scripts from starting a daemon: invoke-rc.d asks
# /usr/sbin/policy-rc.d, and exit status 101 means "action forbidden". An existing policy
# file is left as it is; a temporary one is removed again afterwards.
POLICY=/usr/sbin/policy-rc.d
ADDED_POLICY=0
if [ ! -e "$POLICY" ]; then
    say "adding a temporary $POLICY so the package does not start a prometheus service"
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null
    $SUDO chmod 755 "$POLICY"
    ADDED_POLICY=1
fi
cleanup() {
    if [ "$ADDED_POLICY" -eq 1 ]; then
        say "removing the temporary $POLICY"
        $SUDO rm -f "$POLICY"
    fi
}
trap cleanup EXIT

# Another apt/dpkg run may hold the lock (a parallel setup step): wait for it.
APT_LOCK_WAIT=(-o DPkg::Lock::Timeout=600)
say "apt-get update"
$SUDO apt-get "${APT_LOCK_WAIT[@]}" update -qq
say "apt-get install prometheus (no recommended packages)"
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get "${APT_LOCK_WAIT[@]}" install -y -qq --no-install-recommends \
    prometheus

# Belt and braces: stop and disable a daemon that started anyway (systemd or sysvinit).
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    say "stopping and disabling the prometheus systemd unit"
    $SUDO systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
if command -v service >/dev/null 2>&1; then
    say "stopping any prometheus service started by the package"
    $SUDO service prometheus stop >/dev/null 2>&1 || true
fi
if command -v update-rc.d >/dev/null 2>&1; then
    $SUDO update-rc.d prometheus disable >/dev/null 2>&1 || true
fi

for tool in prometheus promtool; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        say "$tool still not on PATH after installing the package" >&2
        exit 1
    fi
done
say "installed: $(prometheus --version 2>&1 | head -n 1)"
