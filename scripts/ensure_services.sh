#!/usr/bin/env bash
# Makes sure PostgreSQL and Redis answer on 127.0.0.1: starts them when they
# are installed but stopped, installs them with apt-get when they are missing.
set -euo pipefail

SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"

apt_install() {
  echo "installing $* with apt-get" >&2
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }

if ! pg_up; then
  command -v pg_ctlcluster >/dev/null 2>&1 || apt_install postgresql postgresql-client
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  if [ -z "$(pg_lsclusters -h 2>/dev/null)" ]; then $SUDO pg_createcluster "$version" main >/dev/null; fi
  conf=/etc/postgresql/$version/main/pg_hba.conf
  if ! grep -q "^host all all 127.0.0.1/32 trust" "$conf"; then
    $SUDO sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$conf"
  fi
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  for _ in $(seq 1 30); do pg_up && break; sleep 1; done
  pg_up || { echo "PostgreSQL did not start" >&2; exit 1; }
fi

if ! redis_up; then
  command -v redis-server >/dev/null 2>&1 || apt_install redis-server
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
  for _ in $(seq 1 30); do redis_up && break; sleep 0.5; done
  redis_up || { echo "Redis did not start" >&2; exit 1; }
fi
# The browser tests drive Debian's Chromium (never a browser downloaded by Playwright).
command -v chromium >/dev/null 2>&1 || apt_install chromium
# The compose files are validated with a compose client's `config` (tests/portal/test_compose.py); there is
# no Docker engine to run them. Debian's docker-compose is such a client; without it that test is skipped.
command -v docker-compose >/dev/null 2>&1 || apt_install docker-compose || echo "docker-compose did not install" >&2
echo "PostgreSQL, Redis, Chromium and docker-compose are ready" >&2
