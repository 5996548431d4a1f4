#!/usr/bin/env bash
# Entrypoint of stagecache's postgres:N stand-in image (/usr/local/bin/docker-entrypoint.sh; built by
# scripts/stand-in-images). Written for this project. It does what the official image's entrypoint
# does for the settings that CI setups rely on:
#
#   POSTGRES_PASSWORD          superuser password; required unless POSTGRES_HOST_AUTH_METHOD=trust
#   POSTGRES_USER              superuser name (default postgres)
#   POSTGRES_DB                database created on first start (default: POSTGRES_USER)
#   POSTGRES_INITDB_ARGS       more initdb arguments (shell words, e.g. "--data-checksums")
#   POSTGRES_INITDB_WALDIR     initdb --waldir
#   POSTGRES_HOST_AUTH_METHOD  pg_hba method for TCP connections (default: password_encryption,
#                              i.e. scram-sha-256)
#   each also as NAME_FILE (read from a file, for secrets)
#   /docker-entrypoint-initdb.d/  *.sh (run when executable, else sourced), *.sql, *.sql.gz,
#                              *.sql.xz, *.sql.zst (through psql), in name order, on first start only
#
# `docker run IMAGE postgres -c fsync=off` and `docker run IMAGE -c fsync=off` pass the arguments to
# the server; any other command (`bash`, `psql ...`) is run as is. Started as root, it prepares the
# directories and continues as the postgres user; started as another user, it runs as that user.
set -Eeo pipefail

log() { printf '%s\n' "$@"; }
fail() { printf '%s\n' "$@" >&2; exit 1; }

# Set NAME from NAME or from the file named by NAME_FILE (not both), else DEFAULT; export it.
from_env_or_file() {
  local name=$1 default=${2-} file_name="${1}_FILE" value
  if [ -n "${!name:-}" ] && [ -n "${!file_name:-}" ]; then
    fail "error: both $name and $file_name are set; use one of them"
  fi
  value=${!name:-$default}
  if [ -n "${!file_name:-}" ]; then
    value=$(<"${!file_name}")
  fi
  export "$name=$value"
  unset "$file_name"
}

# Is this a server run that only prints something (help, version, a setting) and touches no data?
only_prints() {
  local arg
  for arg in "$@"; do
    case "$arg" in
      -'?' | --help | --describe-config | -V | --version | -C | -C* | --check) return 0 ;;
    esac
  done
  return 1
}

# Run SQL from stdin, or the file FILE, through psql over the unix socket.
run_psql() { # [psql option...]
  "${psql[@]}" "$@"
}

run_initdb_scripts() {
  local f
  shopt -s nullglob
  for f in /docker-entrypoint-initdb.d/*; do
    case "$f" in
      *.sh)
        if [ -x "$f" ]; then
          log "$0: running $f"
          "$f"
        else
          log "$0: sourcing $f"
          # shellcheck disable=SC1090
          . "$f"
        fi
        ;;
      *.sql) log "$0: running $f"; run_psql --dbname "$POSTGRES_DB" -f "$f" ;;
      *.sql.gz) log "$0: running $f"; gzip -dc "$f" | run_psql --dbname "$POSTGRES_DB" ;;
      *.sql.xz) log "$0: running $f"; xz -dc "$f" | run_psql --dbname "$POSTGRES_DB" ;;
      *.sql.zst) log "$0: running $f"; zstd -dc "$f" | run_psql --dbname "$POSTGRES_DB" ;;
      *) log "$0: ignoring $f" ;;
    esac
  done
  shopt -u nullglob
}

initialize() { # server arguments...
  from_env_or_file POSTGRES_PASSWORD
  from_env_or_file POSTGRES_USER postgres
  from_env_or_file POSTGRES_DB "$POSTGRES_USER"
  from_env_or_file POSTGRES_INITDB_ARGS
  local auth=${POSTGRES_HOST_AUTH_METHOD:-}

  if [ -z "$POSTGRES_PASSWORD" ] && [ "$auth" != trust ]; then
    fail "Error: the database is not initialized and no superuser password is given." \
      "" \
      "  Set POSTGRES_PASSWORD to a non-empty value for the superuser, for example" \
      "  \"-e POSTGRES_PASSWORD=password\" on \"docker run\"." \
      "" \
      "  Or set POSTGRES_HOST_AUTH_METHOD=trust to accept every connection without a password." \
      "  That is *not* recommended: see https://www.postgresql.org/docs/current/auth-trust.html"
  fi
  if [ "$auth" = trust ]; then
    log "WARNING: POSTGRES_HOST_AUTH_METHOD=trust: connections from any host need no password."
  fi

  # initdb needs a passwd entry for the current user: lend one when running under an unknown uid.
  local nss_passwd="" nss_group=""
  if ! getent passwd "$(id -u)" >/dev/null 2>&1; then
    local lib
    for lib in /usr/lib/*/libnss_wrapper.so /usr/lib/libnss_wrapper.so; do
      [ -e "$lib" ] || continue
      nss_passwd=$(mktemp) nss_group=$(mktemp)
      printf 'postgres:x:%s:%s:PostgreSQL:%s:/bin/false\n' "$(id -u)" "$(id -g)" "$PGDATA" >"$nss_passwd"
      printf 'postgres:x:%s:\n' "$(id -g)" >"$nss_group"
      export LD_PRELOAD="$lib" NSS_WRAPPER_PASSWD="$nss_passwd" NSS_WRAPPER_GROUP="$nss_group"
      break
    done
  fi

  local initdb_args=(--username="$POSTGRES_USER")
  # A UTF-8 cluster unless POSTGRES_INITDB_ARGS chooses the encoding or locale itself.
  case " $POSTGRES_INITDB_ARGS " in
    *" -E"* | *" --encoding"* | *" --locale"* | *" --lc-ctype"* | *" --icu-locale"*) ;;
    *) initdb_args+=(--encoding=UTF8) ;;
  esac
  if [ -n "${POSTGRES_INITDB_WALDIR:-}" ]; then
    initdb_args+=(--waldir="$POSTGRES_INITDB_WALDIR")
  fi
  local pwfile=""
  if [ -n "$POSTGRES_PASSWORD" ]; then
    pwfile=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
    initdb_args+=(--pwfile="$pwfile")
  fi
  # POSTGRES_INITDB_ARGS is shell words (quotes allowed), as with the official image.
  eval 'initdb "${initdb_args[@]}" '"$POSTGRES_INITDB_ARGS"
  if [ -n "$pwfile" ]; then rm -f "$pwfile"; fi

  if [ -n "$nss_passwd" ]; then
    rm -f "$nss_passwd" "$nss_group"
    unset LD_PRELOAD NSS_WRAPPER_PASSWD NSS_WRAPPER_GROUP
  fi

  # TCP connections from anywhere, with a password (initdb's own lines keep local ones trusted).
  if [ -z "$auth" ]; then
    auth=$(postgres -C password_encryption "$@")
  fi
  printf '\nhost all all all %s\n' "$auth" >>"$PGDATA/pg_hba.conf"

  # A temporary server for the database and the init scripts: no TCP, and its unix socket in a
  # directory of its own (PGHOST), so that a healthcheck (`pg_isready`) does not pass before the
  # real server is up.
  export PGPASSWORD="${PGPASSWORD:-$POSTGRES_PASSWORD}"
  local sockdir opts="" saved_pghost=${PGHOST-} had_pghost=${PGHOST+x}
  sockdir=$(mktemp -d)
  if [ $# -gt 0 ]; then opts="$(printf '%q ' "$@")"; fi
  opts+="-c listen_addresses='' -c unix_socket_directories=$(printf '%q' "$sockdir") -p ${PGPORT:-5432}"
  export PGHOST="$sockdir"
  PGUSER="$POSTGRES_USER" pg_ctl -D "$PGDATA" -o "$opts" -w start

  # For init scripts that are sourced (as with the official image): "${psql[@]}" reaches the server.
  psql=(psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc)

  if [ "$POSTGRES_DB" != postgres ]; then
    local exists
    exists=$(run_psql --dbname postgres -tA --set db="$POSTGRES_DB" <<<"SELECT 1 FROM pg_database WHERE datname = :'db';")
    if [ -z "$exists" ]; then
      run_psql --dbname postgres --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
    fi
  fi

  run_initdb_scripts

  PGUSER="$POSTGRES_USER" pg_ctl -D "$PGDATA" -m fast -w stop
  unset PGPASSWORD PGHOST
  if [ -n "$had_pghost" ]; then export PGHOST="$saved_pghost"; fi
  rmdir "$sockdir" 2>/dev/null || :

  log "" "PostgreSQL init process complete; ready for start up." ""
}

# --- main ------------------------------------------------------------------------------------------
if [ $# -eq 0 ] || [ "${1:0:1}" = '-' ]; then
  set -- postgres "$@"
fi
if [ "$1" != postgres ] || only_prints "${@:2}"; then
  exec "$@"
fi

: "${PGDATA:=/var/lib/postgresql/data}"
export PGDATA

if [ "$(id -u)" = 0 ]; then
  # Directories the postgres user must own, then the rest of this script as that user.
  mkdir -p "$PGDATA"
  chmod 00700 "$PGDATA"
  find "$PGDATA" \! -user postgres -exec chown postgres:postgres '{}' +
  mkdir -p /var/run/postgresql
  chown postgres:postgres /var/run/postgresql
  chmod 03777 /var/run/postgresql
  if [ -n "${POSTGRES_INITDB_WALDIR:-}" ]; then
    mkdir -p "$POSTGRES_INITDB_WALDIR"
    find "$POSTGRES_INITDB_WALDIR" \! -user postgres -exec chown postgres:postgres '{}' +
    chmod 00700 "$POSTGRES_INITDB_WALDIR"
  fi
  HOME=$(getent passwd postgres | cut -d: -f6)
  export HOME USER=postgres LOGNAME=postgres
  exec setpriv --reuid=postgres --regid=postgres --init-groups -- "$0" "$@"
fi

# As the postgres user (or whichever non-root user the container runs as).
mkdir -p "$PGDATA" 2>/dev/null || :
chmod 00700 "$PGDATA" 2>/dev/null || :

if [ -s "$PGDATA/PG_VERSION" ]; then
  log "" "PostgreSQL Database directory appears to contain a database; Skipping initialization" ""
else
  initialize "${@:2}"
fi

exec "$@"
