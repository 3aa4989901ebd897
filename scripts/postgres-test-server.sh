#!/usr/bin/env bash
# A throwaway PostgreSQL server for the tests (Debian's package), on
# 127.0.0.1 and a free port, with its data in DIR.
#
#   scripts/postgres-test-server.sh start DIR   prints the admin URL (postgres://attempt@127.0.0.1:PORT/postgres)
#   scripts/postgres-test-server.sh stop DIR
#
# Installs the `postgresql` package with apt-get if no server binaries are
# found. PostgreSQL refuses to run as root, so as root it runs as the
# `postgres` user the package creates.
set -euo pipefail
cmd=${1:?usage: $0 start|stop DIR}
dir=$(realpath -m "${2:?usage: $0 start|stop DIR}")

find_bin() {
  local initdb
  initdb=$(command -v initdb 2>/dev/null || ls -d /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1 || true)
  [[ -n "$initdb" ]] && dirname "$(readlink -f "$initdb")"
}
bin=$(find_bin || true)
if [[ -z "$bin" ]]; then
  [[ $(id -u) == 0 ]] || { echo "PostgreSQL is not installed (apt-get install postgresql)" >&2; exit 1; }
  echo "installing PostgreSQL (Debian package postgresql)..." >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null 2>&1 ||
    { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null; }
  bin=$(find_bin)
fi

as_pg() {
  if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case "$cmd" in
  start)
    mkdir -p "$dir"
    [[ $(id -u) == 0 ]] && chown postgres "$dir"
    as_pg "$bin/initdb" -D "$dir/data" -U attempt -A trust -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 ||
      { cat "$dir/initdb.log" >&2; exit 1; }
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    # Durability is not under test here: fsync off keeps the suite fast.
    as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >/dev/null ||
      { cat "$dir/server.log" >&2; exit 1; }
    echo "postgres://attempt@127.0.0.1:$port/postgres"
    ;;
  stop)
    [[ -d "$dir/data" ]] && as_pg "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$dir"
    ;;
  *) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
