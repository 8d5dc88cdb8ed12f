#!/usr/bin/env bash
# Make sure the `prometheus` and `promtool` binaries are on PATH (the dashboard rule tests and
# the live Prometheus integration test need them). Idempotent: does nothing when both exist.
#
# On Debian/Ubuntu it says what is missing and everything apt would install with it, then
# installs the distribution's `prometheus` package (which ships both binaries) without
# recommended packages, as root or with `sudo -n` (without either: names the package, exit 1),
# and makes sure no Prometheus daemon is left running from the install: the tests start their
# own server on a free loopback port, and a packaged daemon would hold port 9090.
#
#   bash scripts/ensure-prometheus.sh          check, and install what is missing
#   bash scripts/ensure-prometheus.sh --help   this text (installs nothing)
set -euo pipefail

case "${1:-}" in
    -h|--help)
        awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
        exit 0
        ;;
    "") ;;
    *)
        echo "ensure-prometheus: unknown argument '$1' (see --help)" >&2
        exit 2
        ;;
esac

say() { printf 'ensure-prometheus: %s\n' "$*"; }

if command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; then
    say "found $(command -v prometheus) and $(command -v promtool): nothing to do"
    exit 0
fi

# shellcheck source=scripts/apt-install.sh
. "$(dirname "${BASH_SOURCE[0]}")/apt-install.sh"
apt_install ensure-prometheus "the dashboard rule tests and the live Prometheus test" prometheus

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo -n"
fi

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
