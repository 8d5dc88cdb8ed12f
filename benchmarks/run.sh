#!/usr/bin/env bash
# relaygate's benchmark (`make bench`): relaygate against a direct call, on loopback.
#
#   bash benchmarks/run.sh                  full run (8 s runs, 3 repetitions, 60 s soak)
#   bash benchmarks/run.sh --quick          3 s runs, 1 repetition, 10 s soak
#   bash benchmarks/run.sh --soak-seconds 600   the 10-minute memory soak
#   bash benchmarks/run.sh --peers          also Portkey's gateway and LiteLLM's proxy
#   bash benchmarks/run.sh --profile 20     also a 20 s py-spy profile (see profile.sh)
#   bash benchmarks/run.sh --streams        the stream scenarios instead (open, long, mixed;
#                                           with --peers, --quick; see benchmarks/streams.py)
#   bash benchmarks/run.sh --help           every flag
#
# Installs what it needs, idempotently, saying what first: nginx, wrk, util-linux and
# redis-server from Debian's packages (as root, or with `sudo -n`;
# otherwise it names them and stops), py-spy into the venv when profiling. `--help` installs nothing. Writes
# benchmarks/results/latest.{md,json} and the results in benchmarks/README.md. Every process
# it starts is stopped when it exits.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
PYTHON="${PYTHON:-$REPO/.venv/bin/python}"

log() { printf '[bench] %s\n' "$*" >&2; }

ensure_tools() {
  local missing=()
  # Debian puts nginx in /usr/sbin, outside a non-root user's PATH (RELAYGATE_SBIN moves it).
  command -v nginx >/dev/null 2>&1 || [ -x "${RELAYGATE_SBIN:-/usr/sbin}/nginx" ] || missing+=(nginx)
  command -v wrk >/dev/null 2>&1 || missing+=(wrk)
  command -v taskset >/dev/null 2>&1 || missing+=(util-linux)
  # The shared-state rows start their own redis-server (no daemon, a free loopback port).
  command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
  if [ "${#missing[@]}" -gt 0 ]; then
    # shellcheck source=scripts/apt-install.sh
    . "$REPO/scripts/apt-install.sh"
    apt_install bench "the benchmark (floor proxy, load generator, CPU pinning, shared state)" "${missing[@]}"
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
    -h|--help)
      # Help installs nothing: this header, then the harness's flags when it can run.
      awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
      if [ -x "$PYTHON" ]; then
        echo
        cd "$REPO" && PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -m benchmarks.harness --help
        echo
        PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -m benchmarks.streams --help
      fi
      exit 0
      ;;
    --profile|--profile=*|--profile-only) PROFILE=1 ;;
    --streams) STREAMS=1 ;;
  esac
done

if [ -n "${STREAMS:-}" ]; then
  # The stream scenarios bring their own upstream and load generator: no nginx, no wrk.
  if ! command -v taskset >/dev/null 2>&1; then
    # shellcheck source=scripts/apt-install.sh
    . "$REPO/scripts/apt-install.sh"
    apt_install bench "CPU pinning for the benchmark" util-linux
  fi
  if [ ! -x "$PYTHON" ]; then
    log "no virtualenv at $REPO/.venv: run 'make install' first"
    exit 1
  fi
  cd "$REPO"
  PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" exec "$PYTHON" -m benchmarks.streams "$@"
fi

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
