# Starts a throwaway PostgreSQL cluster for the tests and exports
# AJAR_TEST_POSTGRES, a DSN to its postgres database. SOURCE it (scripts/test.sh
# does when AJAR_TEST_POSTGRES is unset):
#
#   source scripts/postgres-test-cluster.sh && go test ./internal/store/...
#
# The cluster lives in a temporary folder, listens only on 127.0.0.1 with
# trust authentication, keeps fsync on, and is stopped and deleted when the
# sourcing shell exits. Sourcing it again while its cluster runs does
# nothing. Needs Debian's postgresql package (/usr/lib/postgresql/*/bin).
# Safe under set -euo pipefail; returns non-zero when it cannot start.

_ajar_pg_run() { # runs a PostgreSQL binary as the postgres user when we are root
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

_ajar_pg_stop() {
  if [ -n "${_AJAR_PG_DIR:-}" ] && [ -d "$_AJAR_PG_DIR" ]; then
    _ajar_pg_run "$_AJAR_PG_BIN/pg_ctl" -D "$_AJAR_PG_DIR/data" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$_AJAR_PG_DIR"
  fi
  if [ "${AJAR_TEST_POSTGRES:-}" = "${_AJAR_PG_DSN:-}" ]; then
    unset AJAR_TEST_POSTGRES
  fi
  unset _AJAR_PG_DIR _AJAR_PG_DSN
}

_ajar_pg_port_free() { # true when nothing accepts connections on 127.0.0.1:$1
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

_ajar_pg_start() {
  # Already running from an earlier source in this shell?
  if [ -n "${_AJAR_PG_DIR:-}" ] && [ -n "${_AJAR_PG_BIN:-}" ] &&
    _ajar_pg_run "$_AJAR_PG_BIN/pg_ctl" -D "$_AJAR_PG_DIR/data" status >/dev/null 2>&1; then
    export AJAR_TEST_POSTGRES="$_AJAR_PG_DSN"
    echo "postgres test cluster already running: $AJAR_TEST_POSTGRES"
    return 0
  fi
  _ajar_pg_stop # leftovers of an earlier cluster of this shell

  local bin=""
  bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1) || true
  if [ -z "$bin" ] || [ ! -x "$bin/postgres" ]; then
    echo "postgres-test-cluster: no PostgreSQL in /usr/lib/postgresql/*/bin (apt-get install postgresql)" >&2
    return 1
  fi
  _AJAR_PG_BIN=$bin

  local dir
  dir=$(mktemp -d /tmp/ajar-pg.XXXXXX) || return 1
  _AJAR_PG_DIR=$dir
  if [ "$(id -u)" -eq 0 ]; then
    chown postgres: "$dir" || return 1
  fi
  # Register the cleanup first, appending to an EXIT trap already set.
  local old=""
  old=$(trap -p EXIT)
  if [[ "$old" != *_ajar_pg_stop* ]]; then
    if [ -n "$old" ]; then
      eval "set -- $old" # trap -- 'command' EXIT
      trap "_ajar_pg_stop; $3" EXIT
    else
      trap _ajar_pg_stop EXIT
    fi
  fi

  if ! _ajar_pg_run "$bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --no-instructions >"$dir/initdb.log" 2>&1; then
    echo "postgres-test-cluster: initdb failed:" >&2
    cat "$dir/initdb.log" >&2
    _ajar_pg_stop
    return 1
  fi
  cat >"$dir/data/pg_hba.conf" <<'EOF'
local all all              trust
host  all all 127.0.0.1/32 trust
EOF
  local port started=""
  for port in $(seq 55432 55531); do
    _ajar_pg_port_free "$port" || continue
    cat >"$dir/data/postgresql.auto.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
fsync = on
synchronous_commit = on
max_connections = 300
EOF
    if _ajar_pg_run "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 start >/dev/null 2>&1; then
      started=$port
      break
    fi
    # Most likely someone took the port between the probe and the start.
  done
  if [ -z "$started" ]; then
    echo "postgres-test-cluster: could not start PostgreSQL:" >&2
    tail -n 20 "$dir/postgres.log" >&2 2>/dev/null || true
    _ajar_pg_stop
    return 1
  fi
  _AJAR_PG_DSN="postgres://postgres@127.0.0.1:$started/postgres?sslmode=disable"
  export AJAR_TEST_POSTGRES="$_AJAR_PG_DSN"
  echo "postgres test cluster ($("$bin/postgres" --version)) in $dir: $AJAR_TEST_POSTGRES"
}

_ajar_pg_start
