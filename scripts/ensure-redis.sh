#!/usr/bin/env bash
# Make sure the `redis-server` binary is on PATH (the shared-state tests start their own
# server on a free loopback port). Idempotent: does nothing when it exists.
#
# On Debian/Ubuntu it says what is missing and everything apt would install with it, then
# installs the distribution's `redis-server` package without recommended packages, as root
# or with `sudo -n` (without either: names the package, exit 1), and makes sure no Redis
# daemon is left running from the install: a packaged daemon would hold port 6379.
#
#   bash scripts/ensure-redis.sh          check, and install what is missing
#   bash scripts/ensure-redis.sh --help   this text (installs nothing)
set -euo pipefail

case "${1:-}" in
    -h|--help)
        awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
        exit 0
        ;;
    "") ;;
    *)
        echo "ensure-redis: unknown argument '$1' (see --help)" >&2
        exit 2
        ;;
esac

say() { printf 'ensure-redis: %s\n' "$*"; }

if command -v redis-server >/dev/null 2>&1; then
    say "found $(command -v redis-server): nothing to do"
    exit 0
fi

# shellcheck source=scripts/apt-install.sh
. "$(dirname "${BASH_SOURCE[0]}")/apt-install.sh"
apt_install ensure-redis "the shared-state tests (limits, cache, Redis outages)" redis-server

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo -n"
fi

# Belt and braces: stop and disable a daemon that started anyway (systemd or sysvinit).
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    say "stopping and disabling the redis-server systemd unit"
    $SUDO systemctl disable --now redis-server >/dev/null 2>&1 || true
fi
if command -v service >/dev/null 2>&1; then
    say "stopping any redis-server service started by the package"
    $SUDO service redis-server stop >/dev/null 2>&1 || true
fi

if ! command -v redis-server >/dev/null 2>&1; then
    say "redis-server still not on PATH after installing the package" >&2
    exit 1
fi
say "installed: $(redis-server --version | head -n 1)"
