#!/usr/bin/env bash
# Make sure headless Chromium and its driver are installed (Debian, run as root).
# Idempotent: installs nothing when both are already present. Used by the status-page
# browser test (tests/status/test_status_page_browser.py).
set -euo pipefail

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)

if [ "${#missing[@]}" -eq 0 ]; then
    echo "chromium: already installed ($(chromium --version 2>/dev/null || echo unknown version))"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "ensure-chromium: need root to install: ${missing[*]}" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "chromium: installed ${missing[*]} ($(chromium --version 2>/dev/null || echo unknown version))"
