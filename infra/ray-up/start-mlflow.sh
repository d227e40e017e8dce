#!/usr/bin/env bash
# Starts seglab's MLflow tracking server on the Ray head node of a cluster-launcher cluster (run by
# head_start_ray_commands in aws-gpu.yaml / gcp-gpu.yaml, inside the Ray container, before `ray start`).
#
# The server is infra/mlflow/serve.sh, configured only by the variables in ~/seglab-mlflow.env (the
# launcher copies your filled-in infra/ray-up/mlflow.env there; see mlflow.env.example). It binds
# 0.0.0.0:5000 on the head's private network: the cloud firewall (the security group Ray creates on AWS,
# the default network's rules on GCP) lets in SSH only from outside, and basic auth guards every request.
# Reach the UI through an SSH tunnel: `ray attach <yaml> --port-forward 5000`, then http://127.0.0.1:5000.
#
# Idempotent: a server this script started before (pid file) is stopped first, so `ray up` can be re-run.
set -euo pipefail

env_file="$HOME/seglab-mlflow.env"
pid_file=/tmp/seglab-mlflow.pid
log_file=/tmp/seglab-mlflow.log
[[ -r $env_file ]] || { echo "start-mlflow.sh: $env_file is missing (copy infra/ray-up/mlflow.env.example to infra/ray-up/mlflow.env and fill it in)" >&2; exit 2; }

set -a
# shellcheck disable=SC1090
. "$env_file"
set +a
head_ip=$(hostname -I | awk '{print $1}')
export MLFLOW_HOST=0.0.0.0
export MLFLOW_PORT=5000
# Clients use http://<head private IP>:5000 (node-env.sh); loopback names are added by serve.sh.
export MLFLOW_ALLOWED_HOSTS="${head_ip}${MLFLOW_ALLOWED_HOSTS:+,$MLFLOW_ALLOWED_HOSTS}"
if [[ $MLFLOW_ARTIFACTS_DESTINATION == /* ]]; then
    mkdir -p "$MLFLOW_ARTIFACTS_DESTINATION"
fi

if [[ -f $pid_file ]] && kill -0 "$(cat "$pid_file")" 2>/dev/null; then
    kill "$(cat "$pid_file")"
    sleep 2
fi
nohup bash "$HOME/seglab/infra/mlflow/serve.sh" >> "$log_file" 2>&1 &
echo $! > "$pid_file"

# Wait until it answers (it may wait for PostgreSQL first); fail `ray up` with the log if it stops.
for _ in $(seq 180); do
    if python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5000/health', timeout=2)" 2>/dev/null; then
        echo "start-mlflow.sh: MLflow is up at http://${head_ip}:5000 (log: $log_file)"
        exit 0
    fi
    if ! kill -0 "$(cat "$pid_file")" 2>/dev/null; then
        echo "start-mlflow.sh: the MLflow server exited; last lines of $log_file:" >&2
        tail -n 20 "$log_file" >&2
        exit 1
    fi
    sleep 1
done
echo "start-mlflow.sh: MLflow did not answer on port 5000 within 180 s (log: $log_file)" >&2
exit 1
