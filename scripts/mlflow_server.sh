#!/usr/bin/env bash
# The MLflow tracking server of a cluster run (docs/cluster.md): jobs on many nodes log over HTTP to
# this one process, which alone writes the database and stores the artifacts; a sqlite file written
# by many nodes over a shared filesystem is what this replaces (llmqfl.cluster refuses that set-up).
#
#   scripts/mlflow_server.sh [DIR]   # runs in the foreground until stopped (Ctrl-C, kill, or end of an sbatch job)
#
# DIR (default ./mlflow-server) holds the backend database (sqlite, written only by this server) and
# the artifact root; $MLFLOW_BACKEND_STORE_URI replaces the database with another one the server
# reaches (postgresql://USER:PASS@HOST/DB, mysql://...). Listens on $MLFLOW_HOST:$MLFLOW_PORT
# (default 0.0.0.0:5000, so compute nodes reach it; choose 127.0.0.1 on a single machine).
# Jobs then need: export MLFLOW_TRACKING_URI=http://THIS_HOST:PORT
set -euo pipefail

DIR=${1:-mlflow-server}
HOST=${MLFLOW_HOST:-0.0.0.0}
PORT=${MLFLOW_PORT:-5000}
mkdir -p "$DIR/artifacts"
DIR=$(cd "$DIR" && pwd)
BACKEND=${MLFLOW_BACKEND_STORE_URI:-sqlite:///$DIR/mlflow.db}
# the mlflow of this checkout's .venv when there is one, else the one on PATH
MLFLOW=$(dirname "$0")/../.venv/bin/mlflow
[ -x "$MLFLOW" ] || MLFLOW=mlflow

echo "mlflow_server.sh: backend $BACKEND, artifacts $DIR/artifacts, http://$HOST:$PORT" >&2
# --artifacts-destination: runs upload through the server (mlflow-artifacts:/), so nodes need no shared disk.
# One worker: a sqlite backend then has a single writer (more workers are fine with a database server).
exec "$MLFLOW" server --host "$HOST" --port "$PORT" --backend-store-uri "$BACKEND" \
    --artifacts-destination "$DIR/artifacts" --workers "${MLFLOW_WORKERS:-1}"
