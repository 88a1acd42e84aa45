#!/usr/bin/env bash
# Installs everything `make run` and `make test` need on a fresh Debian 12 machine (as root):
# system packages, then a virtual environment with the project and its test tools.
# Idempotent and quick when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(mmdebstrap sip-tester espeak-ng sox postgresql iproute2 procps chromium fonts-noto-cjk
          kamailio
          redis-server)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
if ((${#missing[@]})); then
  if [ "$(id -u)" -ne 0 ]; then
    echo "bootstrap: these system packages are missing: ${missing[*]}" >&2
    echo "bootstrap: run as root, or install them with: apt-get install ${missing[*]}" >&2
    exit 1
  fi
  echo "bootstrap: installing system packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# The project starts its own Kamailio (hotline edge up); Debian's service must not hold 5060.
if [ "$(id -u)" -eq 0 ] && [ -e /lib/systemd/system/kamailio.service ] && [ -d /run/systemd/system ]; then
  systemctl disable --now kamailio.service >/dev/null 2>&1 || true
elif [ "$(id -u)" -eq 0 ] && [ -x /etc/init.d/kamailio ]; then
  invoke-rc.d kamailio stop >/dev/null 2>&1 || true
  update-rc.d kamailio disable >/dev/null 2>&1 || true
fi

# Exactly the locked, hash-checked releases (requirements-lock.txt, `make lock` refreshes it),
# then the project itself without resolving anything again.
stamp_src=$(cat pyproject.toml requirements-lock.txt | sha256sum | cut -c1-16)
if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv"
  python3 -m venv .venv
fi
if [ "$(cat .venv/.installed 2>/dev/null)" != "$stamp_src" ]; then
  echo "bootstrap: installing Python packages into .venv"
  .venv/bin/pip install -q --require-hashes -r requirements-lock.txt
  .venv/bin/pip install -q --no-deps --no-build-isolation -e .
  echo "$stamp_src" > .venv/.installed
fi
