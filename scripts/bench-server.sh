#!/usr/bin/env bash
# Benchmarks `attempt-pkg serve` against nginx serving the same registry
# directory (loopback only). Installs Debian's nginx if it is missing.
#   scripts/bench-server.sh [--seconds S] [--connections N] [--packages N]
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
    echo "installing nginx (Debian package) for the comparison" >&2
    if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nginx-light >/dev/null 2>&1 \
        || DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nginx >/dev/null
fi
# The packaged nginx may start a system instance on port 80; the benchmark
# runs its own on a free loopback port and does not touch that one.
exec cargo bench --bench server -- "$@"
