#!/usr/bin/env bash
# Sourced by scripts/test.sh: starts a private PostgreSQL cluster on a free loopback port
# (as the 'postgres' user when run by root, since the server refuses to run as root) and
# exports VOICEBOT_TEST_PG_URL. The cluster is stopped when the calling shell exits.
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
if [ -z "$PGBIN" ]; then
  echo "pg-test-server: PostgreSQL not installed; PostgreSQL tests will be skipped" >&2
  return 0 2>/dev/null || exit 0
fi
PGDIR=$(mktemp -d /tmp/voicebot-pg.XXXXXX)
PGPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
RUNAS=()
if [ "$(id -u)" -eq 0 ]; then chown postgres "$PGDIR"; RUNAS=(runuser -u postgres --); fi
"${RUNAS[@]}" "$PGBIN/initdb" -D "$PGDIR/data" -U voicebot --auth=trust -E UTF8 >/dev/null
"${RUNAS[@]}" "$PGBIN/pg_ctl" -D "$PGDIR/data" -o "-p $PGPORT -k $PGDIR -c listen_addresses=127.0.0.1" -l "$PGDIR/log" -w start >/dev/null
"${RUNAS[@]}" "$PGBIN/createdb" -h 127.0.0.1 -p "$PGPORT" -U voicebot voicebot_test
export VOICEBOT_TEST_PG_URL="postgresql://voicebot@127.0.0.1:$PGPORT/voicebot_test"
_voicebot_pg_stop() { "${RUNAS[@]}" "$PGBIN/pg_ctl" -D "$PGDIR/data" -m fast stop >/dev/null 2>&1; rm -rf "$PGDIR"; }
trap _voicebot_pg_stop EXIT
echo "pg-test-server: PostgreSQL on 127.0.0.1:$PGPORT"
