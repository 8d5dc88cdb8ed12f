#!/usr/bin/env bash
# Make sure headless Chromium and its driver are installed, for the status-page browser test
# (tests/status/test_status_page_browser.py). Idempotent: installs nothing when both are
# present. Otherwise it says which packages are missing and everything apt would install with
# them, then installs them from Debian's packages: as root, or with `sudo -n`; without
# either, it names the packages and exits 1.
#
#   bash scripts/ensure-chromium.sh          check, and install what is missing
#   bash scripts/ensure-chromium.sh --help   this text (installs nothing)
set -euo pipefail

case "${1:-}" in
    -h|--help)
        awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
        exit 0
        ;;
    "") ;;
    *)
        echo "ensure-chromium: unknown argument '$1' (see --help)" >&2
        exit 2
        ;;
esac

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)

if [ "${#missing[@]}" -eq 0 ]; then
    echo "ensure-chromium: found $(chromium --version 2>/dev/null || echo chromium): nothing to do"
    exit 0
fi

# shellcheck source=scripts/apt-install.sh
. "$(dirname "${BASH_SOURCE[0]}")/apt-install.sh"
apt_install ensure-chromium "the status-page browser test" "${missing[@]}"
echo "ensure-chromium: $(chromium --version 2>/dev/null || echo 'chromium installed')"
