#!/usr/bin/env bash
# Shared set-up for demo.sh and test.sh: Debian packages, the .venv and the Python requirements.
# Usage: source scripts/setup_env.sh [requirements-file]   (run from anywhere; it cd's to the repo)
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
REQUIREMENTS="${1:-requirements.txt}"
DEBIAN_PACKAGES=(libdnnl-dev openmpi-bin libopenmpi-dev)

missing_debian_packages() {
  local pkg
  for pkg in "${DEBIAN_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || echo "$pkg"
  done
}

install_debian_packages() {
  local missing
  missing=$(missing_debian_packages)
  [ -z "$missing" ] && return 0
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "jgan: apt-get not found; install these packages by hand: $missing" >&2
    return 0
  fi
  local sudo=""
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo -n"; else
      echo "jgan: not root; run: sudo apt-get install -y $missing" >&2
      return 0
    fi
  fi
  echo "jgan: installing Debian packages: $missing"
  $sudo apt-get update -qq
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
}

pick_python() {
  local candidate
  for candidate in python3.11 python3; do
    command -v "$candidate" >/dev/null 2>&1 && { echo "$candidate"; return; }
  done
  echo "jgan: no python3 found" >&2
  exit 1
}

create_venv() {
  if [ ! -x .venv/bin/python ]; then
    echo "jgan: creating .venv"
    "$(pick_python)" -m venv .venv
  fi
  # shellcheck disable=SC1091
  source .venv/bin/activate
  python -m pip install -q --upgrade pip
  echo "jgan: installing $REQUIREMENTS"
  python -m pip install -q -r "$REQUIREMENTS"
  python -m pip install -q --no-deps -e .
}

install_debian_packages
create_venv
