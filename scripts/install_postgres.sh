#!/usr/bin/env bash
# PostgreSQL for the shequ service (the Dagster instance's run, event-log and schedule storage).
#
#   sudo bash scripts/install_postgres.sh          # install, create cluster + role + database for SHEQU_HOME
#   sudo bash scripts/install_postgres.sh --drop   # remove this home's cluster (its data is deleted)
#
# Installs the Debian `postgresql` package when missing, then creates, without systemd, one cluster per service
# home (pg_createcluster / pg_ctlcluster; name shequ_<hash of the home path>, data under /var/lib/postgresql),
# a role `shequ` with a generated password and a database `shequ_dagster`. The password is written to
# $SHEQU_HOME/pg_password (mode 0600) and the connection (no password) to $SHEQU_HOME/postgres.json.
# Nothing secret goes into the repository. Re-running is safe: what exists is kept (a missing password is
# regenerated and set on the role). The cluster is left stopped unless it was running: `shequ serve start`
# starts it. Instead of all this, SHEQU_PG_URL may point at an existing PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."
HOME_DIR="${SHEQU_HOME:-data/service}"
mkdir -p "$HOME_DIR"
HOME_DIR="$(cd "$HOME_DIR" && pwd)"
NAME="shequ_$(printf '%s' "$HOME_DIR" | sha256sum | cut -c1-8)"
ROLE=shequ
DB=shequ_dagster

if [ "$(id -u)" -ne 0 ]; then
  echo "安装 PostgreSQL 需要 root 权限：请运行 sudo bash scripts/install_postgres.sh" >&2
  echo "（或设置 SHEQU_PG_URL=postgresql://用户:密码@主机:端口/库 指向已有的 PostgreSQL，不必运行本脚本）" >&2
  exit 1
fi

if ! command -v pg_createcluster >/dev/null 2>&1 || ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  [ "${1:-}" = "--drop" ] && { echo "未安装 PostgreSQL，无需删除"; exit 0; }
  echo "安装 Debian 软件包 postgresql …"
  export DEBIAN_FRONTEND=noninteractive
  # another apt may hold the dpkg lock on a shared machine: wait for it
  if ! apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends postgresql postgresql-client; then
    apt-get -o DPkg::Lock::Timeout=600 update
    apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends postgresql postgresql-client || {
      echo "无法安装 postgresql 软件包（软件源不可达？）。可改为设置 SHEQU_PG_URL 指向已有的 PostgreSQL" >&2
      exit 1; }
  fi
fi
VER="$(ls /usr/lib/postgresql | sort -n | tail -1)"

cluster_line() { pg_lsclusters -h | awk -v v="$VER" -v n="$NAME" '$1 == v && $2 == n'; }

if [ "${1:-}" = "--drop" ]; then
  if [ -n "$(cluster_line)" ]; then
    pg_dropcluster --stop "$VER" "$NAME"
    echo "已删除集群 $VER/$NAME"
  fi
  rm -f "$HOME_DIR/postgres.json" "$HOME_DIR/pg_password"
  exit 0
fi

if [ -z "$(cluster_line)" ]; then
  PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  echo "创建集群 $VER/$NAME（端口 $PORT）…"
  pg_createcluster "$VER" "$NAME" -p "$PORT" --start-conf=manual -- --auth-local=peer --auth-host=scram-sha-256 \
    --encoding=UTF8 --locale=C.UTF-8 >/dev/null
fi
PORT="$(cluster_line | awk '{print $3}')"
WAS_RUNNING=0
if cluster_line | grep -q online; then WAS_RUNNING=1; else pg_ctlcluster "$VER" "$NAME" start; fi

umask 077
if [ ! -s "$HOME_DIR/pg_password" ]; then
  python3 -c 'import secrets; print(secrets.token_urlsafe(24))' > "$HOME_DIR/pg_password"
fi
chmod 600 "$HOME_DIR/pg_password"
PW="$(cat "$HOME_DIR/pg_password")"

runuser -u postgres -- psql -q -p "$PORT" -d postgres -v ON_ERROR_STOP=1 -v pw="$PW" >/dev/null <<SQL
SELECT format('CREATE ROLE %I LOGIN', '$ROLE') WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$ROLE') \gexec
ALTER ROLE $ROLE WITH LOGIN PASSWORD :'pw';
SELECT format('CREATE DATABASE %I OWNER %I', '$DB', '$ROLE')
  WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$DB') \gexec
SQL

cat > "$HOME_DIR/postgres.json" <<JSON
{"version": "$VER", "cluster": "$NAME", "host": "127.0.0.1", "port": $PORT, "user": "$ROLE", "db": "$DB",
 "password_file": "pg_password"}
JSON
[ "$WAS_RUNNING" = 1 ] || pg_ctlcluster "$VER" "$NAME" stop
echo "PostgreSQL $VER 集群 $NAME 已就绪（127.0.0.1:$PORT，库 $DB，角色 $ROLE；密码在 $HOME_DIR/pg_password，权限 0600）"
