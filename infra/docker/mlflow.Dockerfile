# syntax=docker/dockerfile:1
# seglab's MLflow tracking server: MLflow 3.17.2 with basic auth, PostgreSQL and S3 support, started by
# infra/mlflow/serve.sh and configured only through environment variables (see that script's header:
# MLFLOW_BACKEND_STORE_URI, MLFLOW_ARTIFACTS_DESTINATION, MLFLOW_AUTH_ADMIN_PASSWORD,
# MLFLOW_FLASK_SERVER_SECRET_KEY, MLFLOW_ALLOWED_HOSTS, ...). No secret is baked into the image.
#
# Build from the repository root:
#   docker build -f infra/docker/mlflow.Dockerfile -t <YOUR_REGISTRY>/seglab-mlflow:3.17.2 .
# Used by infra/compose/compose.yaml and infra/k8s/mlflow.yaml.
FROM python:3.11-slim-bookworm

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MLFLOW_HOST=0.0.0.0 \
    MLFLOW_PORT=5000

# mlflow pinned to the version the project tests with; its own dependencies (SQLAlchemy, alembic,
# Flask ...) held to the same pins through constraints.txt. `auth` brings Flask-WTF (basic auth), `db`
# the PostgreSQL drivers (SQLAlchemy 2.1 uses psycopg 3 for postgresql:// URLs); boto3 talks to S3
# (or an S3-compatible store via MLFLOW_S3_ENDPOINT_URL).
COPY constraints.txt /tmp/constraints.txt
RUN pip install --no-cache-dir -c /tmp/constraints.txt \
        "mlflow[auth,db]==3.17.2" "boto3==1.44.8" "psycopg[binary]==3.3.9" \
    && rm /tmp/constraints.txt

# An unprivileged user; /var/lib/mlflow/artifacts is where a single-machine set-up (docker compose)
# keeps artifacts on a named volume, which Docker initialises with this ownership.
RUN useradd --system --uid 10001 --gid 0 --home-dir /home/mlflow --create-home mlflow \
    && mkdir -p /var/lib/mlflow/artifacts \
    && chown -R 10001:0 /var/lib/mlflow

COPY --chmod=0755 infra/mlflow/serve.sh /opt/seglab/serve.sh

USER 10001
WORKDIR /home/mlflow
EXPOSE 5000

# /health is exempt from MLflow's Host-header check and needs no login.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('MLFLOW_PORT', '5000'), timeout=4)"]

CMD ["/opt/seglab/serve.sh"]
