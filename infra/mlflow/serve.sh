#!/usr/bin/env bash
# seglab's MLflow tracking server, configured by environment variables only (the same script runs in
# the container image, docker compose, the Kubernetes Deployment and tests/integration/test_tracking_server.py).
#
#   MLFLOW_BACKEND_STORE_URI        required  postgresql://user:pass@host:5432/db (or sqlite:///abs/path.db)
#   MLFLOW_ARTIFACTS_DESTINATION    required  s3://bucket/prefix (or a local path): where the server puts artifacts
#   MLFLOW_AUTH_ADMIN_PASSWORD      required  password of the `admin` user, used only to create it on first start
#   MLFLOW_FLASK_SERVER_SECRET_KEY  required  Flask secret of the auth app (CSRF); the same on every replica
#   MLFLOW_HOST                     127.0.0.1 interface to bind (0.0.0.0 in a container)
#   MLFLOW_PORT                     5000
#   MLFLOW_ALLOWED_HOSTS            (comma list) host names clients use, e.g. the Service's DNS names;
#                                   required when MLFLOW_HOST is not a loopback address
#   MLFLOW_WORKERS                  1         uvicorn worker processes
#   MLFLOW_S3_ENDPOINT_URL          (optional) an S3-compatible endpoint (MinIO, moto, GCS interop, R2 ...)
#   AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY   the S3 credentials: the server's only (clients need none)
# Optional extras (defaults are what the templates use):
#   MLFLOW_AUTH_DATABASE_URI        basic auth's user store; default: MLFLOW_BACKEND_STORE_URI (same database)
#   MLFLOW_AUTH_CONFIG_PATH         a complete basic_auth.ini of your own; then none is generated
#   MLFLOW_AUTH_DEFAULT_PERMISSION  READ      what a logged-in user may do with others' experiments
#   MLFLOW_DB_WAIT_S                120       how long to wait for PostgreSQL to accept connections
#
# A missing or malformed required setting stops here with one line on stderr and exit status 2.
set -euo pipefail

die() { echo "serve.sh: $*" >&2; exit 2; }

# -- the settings --------------------------------------------------------------------------------------
for var in MLFLOW_BACKEND_STORE_URI MLFLOW_ARTIFACTS_DESTINATION MLFLOW_AUTH_ADMIN_PASSWORD MLFLOW_FLASK_SERVER_SECRET_KEY; do
    [[ -n "${!var:-}" ]] || die "$var is not set (required; see the header of infra/mlflow/serve.sh)"
done
MLFLOW_HOST=${MLFLOW_HOST:-127.0.0.1}
MLFLOW_PORT=${MLFLOW_PORT:-5000}
MLFLOW_WORKERS=${MLFLOW_WORKERS:-1}
MLFLOW_DB_WAIT_S=${MLFLOW_DB_WAIT_S:-120}
MLFLOW_AUTH_DEFAULT_PERMISSION=${MLFLOW_AUTH_DEFAULT_PERMISSION:-READ}
# MLflow's own policy (checked here so that a short one is one line, not a traceback on the first start)
(( ${#MLFLOW_AUTH_ADMIN_PASSWORD} >= 12 )) || die "MLFLOW_AUTH_ADMIN_PASSWORD must be at least 12 characters (MLflow's password policy)"
[[ $MLFLOW_PORT =~ ^[0-9]+$ ]] && (( MLFLOW_PORT >= 1 && MLFLOW_PORT <= 65535 )) \
    || die "MLFLOW_PORT must be a port number (1-65535), not '$MLFLOW_PORT'"
[[ $MLFLOW_WORKERS =~ ^[1-9][0-9]*$ ]] || die "MLFLOW_WORKERS must be a positive integer, not '$MLFLOW_WORKERS'"
[[ $MLFLOW_DB_WAIT_S =~ ^[0-9]+$ ]] || die "MLFLOW_DB_WAIT_S must be a number of seconds, not '$MLFLOW_DB_WAIT_S'"
case $MLFLOW_AUTH_DEFAULT_PERMISSION in
    READ|USE|EDIT|MANAGE|NO_PERMISSIONS) ;;
    *) die "MLFLOW_AUTH_DEFAULT_PERMISSION must be READ, USE, EDIT, MANAGE or NO_PERMISSIONS, not '$MLFLOW_AUTH_DEFAULT_PERMISSION'" ;;
esac
case $MLFLOW_BACKEND_STORE_URI in
    postgresql://*|postgresql+*://*|sqlite:///*) ;;
    *) die "MLFLOW_BACKEND_STORE_URI must be postgresql://... or sqlite:///..., not '${MLFLOW_BACKEND_STORE_URI%%:*}:...'" ;;
esac
case $MLFLOW_ARTIFACTS_DESTINATION in
    s3://?*) ;;
    *://*) die "MLFLOW_ARTIFACTS_DESTINATION must be s3://bucket[/prefix] or a local path, not '$MLFLOW_ARTIFACTS_DESTINATION'" ;;
    *) ;;  # a local folder (a single-node set-up; MLflow creates it)
esac
[[ $MLFLOW_BACKEND_STORE_URI != *$'\n'* && ${MLFLOW_AUTH_DATABASE_URI:-} != *$'\n'* ]] \
    || die "MLFLOW_BACKEND_STORE_URI / MLFLOW_AUTH_DATABASE_URI must be one line"

# Security middleware (MLflow's default; this script never passes --disable-security-middleware) answers
# 403 to a Host header outside --allowed-hosts, which stops DNS-rebinding attacks from a browser. A bare
# name "mlflow.seglab.svc.cluster.local" also allows it with any port ("...:*"), since clients send
# "name:port"; loopback names are always allowed (kubectl port-forward, probes from inside the pod;
# /health is exempt anyway). Binding beyond loopback without a list would answer 403 to the very names
# clients use (MLflow's default list has only localhost and private IPs), so that is refused here.
is_loopback_bind() { [[ $MLFLOW_HOST == 127.* || $MLFLOW_HOST == localhost || $MLFLOW_HOST == ::1 ]]; }
allowed=""
if [[ -n "${MLFLOW_ALLOWED_HOSTS:-}" ]]; then
    IFS=',' read -r -a entries <<< "$MLFLOW_ALLOWED_HOSTS,localhost,127.0.0.1"
    for h in "${entries[@]}"; do
        h=${h//[[:space:]]/}
        [[ -n $h ]] || continue
        allowed+="${allowed:+,}$h"
        # a bare name or IPv4 address: the same with any port (IPv6 and "host:port" are taken as given)
        [[ $h == *'*'* || $h == *:* ]] || allowed+=",$h:*"
    done
elif ! is_loopback_bind; then
    die "MLFLOW_ALLOWED_HOSTS is not set but MLFLOW_HOST=$MLFLOW_HOST: list the host names clients use (e.g. the Service's DNS names)"
fi

# Which Python runs MLflow: the interpreter beside the `mlflow` executable (a venv or the image's).
MLFLOW_BIN=$(command -v mlflow) || die "mlflow is not on PATH (install mlflow[auth], and psycopg[binary] for PostgreSQL)"
PYTHON="$(dirname "$MLFLOW_BIN")/python"
[[ -x $PYTHON ]] || PYTHON=$(command -v python3)
"$PYTHON" -c 'import flask_wtf' 2>/dev/null || die "basic auth needs the mlflow[auth] extra (Flask-WTF is missing)"
if [[ $MLFLOW_ARTIFACTS_DESTINATION == s3://* ]]; then
    "$PYTHON" -c 'import boto3' 2>/dev/null || die "an s3:// artifacts destination needs boto3 in the server's environment"
fi

# -- wait for PostgreSQL -------------------------------------------------------------------------------
# In compose / Kubernetes the database may start after this container: retry connecting (with the
# same driver and URI MLflow will use) instead of letting MLflow fail on its first query. A wrong
# password or database name fails at once: waiting cannot fix it.
wait_for_db() {
    MLFLOW_DB_WAIT_URI=$1 "$PYTHON" - <<'PY' || exit $?
import os, sys, time

import sqlalchemy

uri, wait = os.environ["MLFLOW_DB_WAIT_URI"], float(os.environ["MLFLOW_DB_WAIT_S"])
where = sqlalchemy.engine.make_url(uri).render_as_string(hide_password=True)
deadline, said = time.monotonic() + wait, False
while True:
    try:
        engine = sqlalchemy.create_engine(uri, poolclass=sqlalchemy.pool.NullPool, connect_args={"connect_timeout": 5})
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        break
    except ImportError as e:
        sys.exit(f"serve.sh: no PostgreSQL driver for {where} ({e}); install psycopg[binary] (the driver SQLAlchemy 2.1 uses for postgresql://)")
    except Exception as e:  # noqa: BLE001 - OperationalError and friends: report the first line
        msg = str(getattr(e, "orig", None) or e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "authentication failed" in msg or ("database" in msg and "does not exist" in msg):
            sys.exit(f"serve.sh: PostgreSQL refused {where}: {msg}")
        if time.monotonic() > deadline:
            sys.exit(f"serve.sh: PostgreSQL at {where} not reachable after {wait:.0f} s: {msg}")
        if not said:
            print(f"serve.sh: waiting up to {wait:.0f} s for PostgreSQL at {where} ({msg})", file=sys.stderr, flush=True)
            said = True
        time.sleep(1)
PY
}
export MLFLOW_DB_WAIT_S
AUTH_DB_URI=${MLFLOW_AUTH_DATABASE_URI:-$MLFLOW_BACKEND_STORE_URI}
[[ $MLFLOW_BACKEND_STORE_URI == postgresql* ]] && wait_for_db "$MLFLOW_BACKEND_STORE_URI"
[[ $AUTH_DB_URI == postgresql* && $AUTH_DB_URI != "$MLFLOW_BACKEND_STORE_URI" ]] && wait_for_db "$AUTH_DB_URI"

# -- basic auth's configuration ------------------------------------------------------------------------
# MLflow reads the auth app's settings from an ini file (MLFLOW_AUTH_CONFIG_PATH); its user store's
# database_uri can only be given there. By default the users live in the tracking store's own database:
# one PostgreSQL to run and back up, and the auth tables (users, roles, role_permissions,
# user_role_assignments, versioned in alembic_version_auth) do not collide with the tracking tables
# (versioned in alembic_version). The file holds the database password, so it is written private
# (umask 077) to a fresh temporary folder (an emptyDir /tmp on Kubernetes) and never into the image.
# The admin user is created on the first start from MLFLOW_AUTH_ADMIN_PASSWORD (read by MLflow from the
# environment, never written to a file); afterwards that variable is ignored (rotate through the API).
if [[ -z "${MLFLOW_AUTH_CONFIG_PATH:-}" ]]; then
    conf_dir=$(umask 077; mktemp -d "${TMPDIR:-/tmp}/seglab-mlflow-auth.XXXXXX")
    MLFLOW_AUTH_CONFIG_PATH=$conf_dir/basic_auth.ini
    (
        umask 077
        # configparser interpolates '%': a URL-encoded password (%40 ...) must be written as '%%'
        cat > "$MLFLOW_AUTH_CONFIG_PATH" <<EOF
[mlflow]
# a logged-in user's permission on experiments and models others created (their own: MANAGE)
default_permission = $MLFLOW_AUTH_DEFAULT_PERMISSION
database_uri = ${AUTH_DB_URI//%/%%}
admin_username = admin
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
EOF
    )
elif [[ ! -r $MLFLOW_AUTH_CONFIG_PATH ]]; then
    die "MLFLOW_AUTH_CONFIG_PATH=$MLFLOW_AUTH_CONFIG_PATH is not a readable file"
fi
export MLFLOW_AUTH_CONFIG_PATH MLFLOW_AUTH_ADMIN_PASSWORD MLFLOW_FLASK_SERVER_SECRET_KEY

# -- the server ----------------------------------------------------------------------------------------
# MLflow reads MLFLOW_BACKEND_STORE_URI itself (it is --backend-store-uri's own environment variable), so
# the database password stays off the command line (ps, kubectl describe, logs); the other settings are
# passed as flags. Artifacts: --serve-artifacts proxies uploads and downloads to --artifacts-destination
# and new experiments default to mlflow-artifacts:/<id>, so clients (Ray workers) need no S3
# credentials and nothing lands on a node's disk; MLFLOW_S3_ENDPOINT_URL and AWS_* are read by the
# server's boto3 from the environment. Job execution (MLflow's GenAI evaluation jobs, which training never
# uses) is off unless asked for: with it and MLflow's 4 workers the UI server took 2.3 GB and 22 s to
# start here, without it and 1 worker 330 MB and ~10 s (../shared/STACK.md).
export MLFLOW_BACKEND_STORE_URI
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION=${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}
args=(server
    --artifacts-destination "$MLFLOW_ARTIFACTS_DESTINATION" --serve-artifacts
    --default-artifact-root mlflow-artifacts:/
    --app-name basic-auth
    --host "$MLFLOW_HOST" --port "$MLFLOW_PORT" --workers "$MLFLOW_WORKERS")
[[ -n $allowed ]] && args+=(--allowed-hosts "$allowed")
echo "serve.sh: mlflow ${args[*]} (backend store ${MLFLOW_BACKEND_STORE_URI%%://*}://..., basic auth users in ${AUTH_DB_URI%%://*}://...)" >&2
exec "$MLFLOW_BIN" "${args[@]}"
