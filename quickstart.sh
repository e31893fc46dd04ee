#!/bin/sh
# Install this checkout into .venv and start oned on its embedded defaults (SQLite, our
# drivers, everything under ./one), with our Hook Execution Manager beside it and
# Prometheus metrics on http://127.0.0.1:9925/metrics. On the first start oned prints the
# generated oneadmin credential (also saved in one/var/.one/one_auth). Ctrl-C stops both.
set -e
cd "$(dirname "$0")"
python3 -m venv .venv
.venv/bin/pip install -q .
export ONE_LOCATION="$PWD/one"
mkdir -p one/etc
if [ ! -e one/etc/oned.conf ]; then
    { cat share/etc/oned.conf
      echo 'METRICS = [ LISTEN_ADDRESS = "127.0.0.1", PORT = 9925 ]'; } > one/etc/oned.conf
fi
.venv/bin/oned-hem &
hem=$!
trap 'kill "$hem" 2>/dev/null || true' EXIT INT TERM
.venv/bin/oned -f
