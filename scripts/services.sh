#!/usr/bin/env bash
# Make sure the local services the tests talk to are running on their standard loopback ports:
# Redis (127.0.0.1:6379) and PostgreSQL (127.0.0.1:5432, trust auth for the tests' databases).
# Installs them from Debian's packages when absent, starts them when stopped, and does nothing
# when they already answer. Idempotent; run as root (CI and the dev machines are).
set -euo pipefail

have() { command -v "$1" >/dev/null 2>&1; }
apt_ready=0
apt_install() {
  if [[ $apt_ready == 0 ]]; then apt-get update -qq; apt_ready=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
wait_for() {  # wait_for SECONDS CMD...: poll until CMD succeeds, bounded
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    (( SECONDS < deadline )) || return 1
    sleep 0.2
  done
}

redis_up() { have redis-cli && redis-cli -h 127.0.0.1 -p 6379 ping | grep -q PONG; }
if ! redis_up; then
  have redis-server || apt_install redis-server redis-tools
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_for 20 redis_up || { echo "redis did not start" >&2; exit 1; }
fi
echo "redis: up"

pg_up() { have pg_isready && pg_isready -h 127.0.0.1 -p 5432 -q; }
if ! pg_up; then
  have pg_ctlcluster || apt_install postgresql
  version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n1)
  if [[ -z "$version" ]]; then
    version=$(ls /usr/lib/postgresql | sort -V | tail -n1)
    pg_createcluster "$version" main >/dev/null
  fi
  conf=/etc/postgresql/$version/main
  # Tests connect over loopback as postgres/root without a password.
  if ! grep -q "mcpwall-tests" "$conf/pg_hba.conf"; then
    { echo "# mcpwall-tests: loopback trust for the test suite"
      echo "host all all 127.0.0.1/32 trust"
      echo "host all all ::1/128 trust"
      cat "$conf/pg_hba.conf"; } > "$conf/pg_hba.conf.new"
    mv "$conf/pg_hba.conf.new" "$conf/pg_hba.conf"
  fi
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  wait_for 30 pg_up || { echo "postgresql did not start" >&2; exit 1; }
fi
for db in test root; do
  psql -h 127.0.0.1 -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='$db'" | grep -q 1 \
    || psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE \"$db\"" 
done
psql -h 127.0.0.1 -U postgres -tAc "SELECT 1 FROM pg_roles WHERE rolname='root'" | grep -q 1 \
  || psql -h 127.0.0.1 -U postgres -qc "CREATE ROLE root SUPERUSER LOGIN"
echo "postgresql: up"
