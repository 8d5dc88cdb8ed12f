# Sourced by relaygate's installer scripts: install Debian packages, saying what first.
#
#   apt_install WHO PURPOSE PACKAGE...
#
# Prints which packages are missing and why they are needed, then the full list apt would
# install with them (dependencies included), then installs them: as root directly, otherwise
# with `sudo -n` (never a password prompt) when sudo allows it. Without root or sudo, or
# without apt-get, it names the packages and the command to run, and returns 1.
# No service is started by the install (a temporary policy-rc.d), and the dpkg lock is
# waited for, since another install may be running.

apt_say() { printf '%s: %s\n' "$APT_WHO" "$*" >&2; }

apt_install() {
    APT_WHO="$1"
    local purpose="$2"
    shift 2
    local packages=("$@")
    apt_say "missing, needed for $purpose: ${packages[*]}"
    if ! command -v apt-get >/dev/null 2>&1; then
        apt_say "apt-get is not available: install ${packages[*]} (or equivalents) yourself"
        return 1
    fi
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
            sudo=(sudo -n)
        else
            apt_say "installing needs root; run: sudo apt-get install --no-install-recommends ${packages[*]}"
            return 1
        fi
    fi
    local lock=(-o DPkg::Lock::Timeout=600)
    apt_say "refreshing the package lists (apt-get update)"
    "${sudo[@]}" apt-get "${lock[@]}" update -qq
    local plan
    plan="$("${sudo[@]}" apt-get "${lock[@]}" -s install --no-install-recommends "${packages[@]}" \
        | awk '/^Inst /{print $2}' | tr '\n' ' ')"
    apt_say "will install from Debian's packages: ${plan:-${packages[*]}}"
    local policy=/usr/sbin/policy-rc.d added_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
        "${sudo[@]}" chmod 755 "$policy"
        added_policy=1
    fi
    local status=0
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "${lock[@]}" install -y -qq \
        --no-install-recommends "${packages[@]}" >/dev/null || status=$?
    if [ "$added_policy" -eq 1 ]; then
        "${sudo[@]}" rm -f "$policy"
    fi
    if [ "$status" -ne 0 ]; then
        apt_say "apt-get install failed (exit status $status)"
        return "$status"
    fi
    apt_say "installed: ${packages[*]}"
}
