#!/usr/bin/env bash
# relaygate's benchmark (`make bench`): relaygate against a direct call, on loopback.
#
#   bash benchmarks/run.sh                  full run (8 s runs, 3 repetitions, 60 s soak)
#   bash benchmarks/run.sh --quick          3 s runs, 1 repetition, 10 s soak
#   bash benchmarks/run.sh --soak-seconds 600   the 10-minute memory soak
#   bash benchmarks/run.sh --peers          also Portkey's gateway and LiteLLM's proxy
#   bash benchmarks/run.sh --profile 20     also a 20 s py-spy profile (see profile.sh)
#   bash benchmarks/run.sh --help           every flag
#
# Installs what it needs, idempotently: nginx and wrk from Debian's packages (as root;
# `apt-get update` only if the first install attempt fails), py-spy into the venv when
# profiling. Writes benchmarks/results/latest.{md,json} and the results in
# benchmarks/README.md. Every process it starts is stopped when it exits.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
PYTHON="${PYTHON:-$REPO/.venv/bin/python}"

log() { printf '[bench] %s\n' "$*" >&2; }

need_root() {
  if [ "$(id -u)" -ne 0 ]; then
    log "$1 is missing and installing it needs root: apt-get install $2"
    exit 1
  fi
}

apt_install() {
  # $@: Debian packages. No service is started by the install (policy-rc.d), and the dpkg
  # lock is waited for, since other work may be installing packages at the same time.
  local created_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    created_policy=1
  fi
  local apt=(apt-get -o DPkg::Lock::Timeout=600 -y -q --no-install-recommends)
  if ! DEBIAN_FRONTEND=noninteractive "${apt[@]}" install "$@" >/dev/null; then
    log "refreshing the package lists (apt-get update)"
    apt-get -o DPkg::Lock::Timeout=600 -q update >/dev/null
    DEBIAN_FRONTEND=noninteractive "${apt[@]}" install "$@" >/dev/null
  fi
  if [ -n "$created_policy" ]; then
    rm -f /usr/sbin/policy-rc.d
  fi
}

ensure_tools() {
  local missing=()
  command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
  command -v wrk >/dev/null 2>&1 || missing+=(wrk)
  command -v taskset >/dev/null 2>&1 || missing+=(util-linux)
  if [ "${#missing[@]}" -gt 0 ]; then
    need_root "${missing[*]}" "${missing[*]}"
    log "installing ${missing[*]} from Debian's packages"
    apt_install "${missing[@]}"
  fi
  if [ ! -x "$PYTHON" ]; then
    log "no virtualenv at $REPO/.venv: run 'make install' first"
    exit 1
  fi
}

ensure_py_spy() {
  if [ ! -x "$(dirname "$PYTHON")/py-spy" ]; then
    log "installing py-spy into the virtualenv (PyPI)"
    "$PYTHON" -m pip install -q py-spy
  fi
}

for arg in "$@"; do
  case "$arg" in
    --profile|--profile=*|--profile-only) PROFILE=1 ;;
  esac
done

ensure_tools
if [ -n "${PROFILE:-}" ]; then
  ensure_py_spy
fi

RUN_DIR="$(mktemp -d /tmp/relaygate-bench-XXXXXX)"
HARNESS_PID=""

cleanup() {
  # The harness stops what it started; this catches anything left if it was killed.
  if [ -n "$HARNESS_PID" ] && kill -0 "$HARNESS_PID" 2>/dev/null; then
    kill -TERM "$HARNESS_PID" 2>/dev/null || true
    wait "$HARNESS_PID" 2>/dev/null || true
  fi
  if [ -f "$RUN_DIR/pids" ]; then
    while read -r pid; do
      if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
      fi
    done < "$RUN_DIR/pids"
    sleep 1
    while read -r pid; do
      if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
      fi
    done < "$RUN_DIR/pids"
  fi
  if [ -z "${KEEP_RUN_DIR:-}" ] && [ "${status:-1}" -eq 0 ]; then
    rm -rf "$RUN_DIR"
  else
    log "logs and configs kept in $RUN_DIR"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

case " $* " in
  *" --keep-run-dir "*) KEEP_RUN_DIR=1 ;;
esac

cd "$REPO"
status=1
PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -m benchmarks.harness --run-dir "$RUN_DIR" "$@" &
HARNESS_PID=$!
status=0
wait "$HARNESS_PID" || status=$?
HARNESS_PID=""
exit "$status"
