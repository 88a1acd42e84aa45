#!/usr/bin/env bash
# Starts the local PostgreSQL cluster (loopback only) and gives the test suite a fresh,
# empty database owned by a dedicated role. Writes var/pg-test.env with HOTLINE_TEST_PG_URL.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p var

ver=$(ls /usr/lib/postgresql 2>/dev/null | sort -V | tail -n1)
[ -n "$ver" ] || { echo "postgres-test: PostgreSQL is not installed (run scripts/bootstrap.sh)" >&2; exit 1; }
if ! pg_lsclusters -h | awk '{print $1" "$2}' | grep -q "^$ver main$"; then
  pg_createcluster "$ver" main -- --auth-local=peer >/dev/null
fi
conf=/etc/postgresql/$ver/main/postgresql.conf
grep -q "^listen_addresses = 'localhost'" "$conf" || echo "listen_addresses = 'localhost'" >> "$conf"
if ! pg_lsclusters -h | awk -v v="$ver" '$1==v && $2=="main" {print $4}' | grep -q online; then
  pg_ctlcluster "$ver" main start
fi
port=$(pg_lsclusters -h | awk -v v="$ver" '$1==v && $2=="main" {print $3}')

pwfile=var/pg-test-password
[ -s "$pwfile" ] || (umask 077; head -c 18 /dev/urandom | base64 | tr -d '/+=' > "$pwfile")
pw=$(cat "$pwfile")
psql_su() { su postgres -c "PGOPTIONS='-c client_min_messages=warning' psql -v ON_ERROR_STOP=1 -qAt -p $port $*"; }
if [ "$(psql_su "-c \"select 1 from pg_roles where rolname='hotline_test'\"")" != 1 ]; then
  psql_su "-c \"create role hotline_test login createdb password '$pw'\""
else
  psql_su "-c \"alter role hotline_test login createdb password '$pw'\""
fi
# The tests drop their databases WITH (FORCE); on a busy server an autovacuum worker may be
# in one, and only a member of pg_signal_backend may end it (the test role, not a superuser).
psql_su "-c \"grant pg_signal_backend to hotline_test\""
# Each pytest process works in a database of its own (hotline_test_<pid>, made and dropped
# by tests/conftest.py), so two runs on one machine never share tables. Drop those of runs
# that died without cleaning up.
for db in $(psql_su "-c \"select datname from pg_database where datname like 'hotline_test_%'\""); do
  pid=${db##*_}
  if [[ "$pid" =~ ^[0-9]+$ ]] && ! kill -0 "$pid" 2>/dev/null; then
    psql_su "-c 'drop database if exists $db with (force)'"
  fi
done
psql_su "-c 'drop database if exists hotline_test with (force)'"
psql_su "-c 'create database hotline_test owner hotline_test'"
echo "HOTLINE_TEST_PG_URL=postgresql+asyncpg://hotline_test:$pw@127.0.0.1:$port/hotline_test" > var/pg-test.env
echo "postgres-test: PostgreSQL $ver on 127.0.0.1:$port, database hotline_test ready"
