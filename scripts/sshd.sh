#!/usr/bin/env bash
# The private sshd of the remote / Ansible steps' tests, on its own, without setup.sh.
#   scripts/sshd.sh start    start (or re-use) it; print its `export` lines
#   scripts/sshd.sh stop     stop it
#   scripts/sshd.sh status   say whether it runs
# State (keys, config, log) lives in $ANSFLOW_CACHE_DIR/sshd (default ~/.cache/ansflow/sshd).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export ANSFLOW_CACHE_DIR="${ANSFLOW_CACHE_DIR:-$HOME/.cache/ansflow}"
state="$ANSFLOW_CACHE_DIR/sshd"

need_apt() {  # same contract as setup.sh's: install what is missing
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "${missing[@]}" >&2
  fi
}

case "${1:-start}" in
  start)
    ANSFLOW_ENV_FILE="$(mktemp)"
    export ANSFLOW_ENV_FILE
    # shellcheck source=/dev/null
    source "$ROOT/scripts/setup.d/50-sshd.sh"
    cat "$ANSFLOW_ENV_FILE"
    rm -f "$ANSFLOW_ENV_FILE"
    ;;
  stop)
    if [ -f "$state/sshd.pid" ] && kill -0 "$(cat "$state/sshd.pid")" 2>/dev/null; then
      echo "stopping the private sshd (pid $(cat "$state/sshd.pid"))" >&2
      kill "$(cat "$state/sshd.pid")"
    fi
    ;;
  status)
    if [ -f "$state/sshd.pid" ] && kill -0 "$(cat "$state/sshd.pid")" 2>/dev/null; then
      echo "sshd: running (pid $(cat "$state/sshd.pid"), port $(cat "$state/port"))"
    else
      echo "sshd: not running"
    fi
    ;;
  *)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
