#!/usr/bin/env bash
# make demo: start a local Ray head (unless RAY_ADDRESS is set), submit the OVeNet-vs-HRNet sweep
# with `ray job submit`, stream its logs, and stop the cluster we started (also on failure/Ctrl-C).
set -uo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
export PATH="$PWD/$VENV/bin:$PATH"
export RAY_AUTH_MODE=${RAY_AUTH_MODE:-disabled} RAY_USAGE_STATS_ENABLED=0 NO_ALBUMENTATIONS_UPDATE=1
export SEGLAB_HOME=${SEGLAB_HOME:-$PWD}
export MLFLOW_TRACKING_URI=${MLFLOW_TRACKING_URI:-sqlite:///$PWD/mlflow.db}
# The demo's comparison (README "What `make demo` does"): an 11-epoch warm start of the baseline, then
# the baseline continued and OVeNet started from it, 2 epochs each, 3 paired seeds, scored on 200
# generated test images that no choice saw.
DEMO_ARGS=("trainer=demo" "sweep.warm_start_epochs=11" "sweep.seeds=3" "dataset.test.num_samples=200" "$@")
DASHBOARD_PORT=${DASHBOARD_PORT:-8265} GCS_PORT=${GCS_PORT:-6379}
session=""  # the session folder of the Ray cluster we started; stop that one only
t0=$(date +%s)

cleanup() {
  if [ -n "$session" ]; then
    echo "==> stopping the local Ray cluster"
    python -m seglab.platform.cluster stop "$session" >/dev/null 2>&1 || true
    session=""
  fi
}
trap cleanup EXIT
trap 'echo; echo "interrupted"; exit 130' INT TERM

echo "==> checking the configuration"
python experiments/ovenet_sweep.py sweep.dry_run=true "${DEMO_ARGS[@]}" || exit 2

if [ -z "${RAY_ADDRESS:-}" ]; then
  # `ray start --head` with every socket on 127.0.0.1 (GCS, raylet, agents, workers, Ray Client,
  # dashboard): nothing off this machine can reach the unauthenticated cluster. See seglab/platform/cluster/local.py.
  echo "==> starting a local Ray head on 127.0.0.1 (dashboard on 127.0.0.1:$DASHBOARD_PORT)"
  if ! session=$(python -m seglab.platform.cluster start --port="$GCS_PORT" --dashboard-port="$DASHBOARD_PORT" \
       --num-cpus="$(nproc)" --log=/tmp/seglab-ray-start.log); then
    session=""
    echo "seglab: error: could not start Ray (is one already running? then set RAY_ADDRESS=http://127.0.0.1:$DASHBOARD_PORT, or GCS_PORT/DASHBOARD_PORT to free ports); see /tmp/seglab-ray-start.log" >&2
    exit 1
  fi
  export RAY_ADDRESS="http://127.0.0.1:$DASHBOARD_PORT"
else
  echo "==> submitting to the Ray cluster at $RAY_ADDRESS"
fi

runtime_env=$(python - <<PY
import json, os
print(json.dumps({
    "env_vars": {k: os.environ[k] for k in ("MLFLOW_TRACKING_URI", "SEGLAB_HOME", "RAY_AUTH_MODE",
                                          "RAY_USAGE_STATS_ENABLED", "NO_ALBUMENTATIONS_UPDATE")},
    "excludes": [".venv", ".git", "data", "runs", "outputs", "mlartifacts", "mlflow.db", "*.pt", "*.pth"],
}))
PY
)
echo "==> ray job submit -- python experiments/ovenet_sweep.py ${DEMO_ARGS[*]}"
ray job submit --address "$RAY_ADDRESS" --working-dir . --runtime-env-json "$runtime_env" \
  -- python experiments/ovenet_sweep.py "${DEMO_ARGS[@]}" 2>&1 \
  | grep --line-buffered -v -E "^\s*$|Uploading package|Creating a file package|Package size|Successfully pushed|RAY_AUTH|To disable this message|DeprecationWarning|^-{5,}$"
status=${PIPESTATUS[0]}
echo "==> demo finished in $(( $(date +%s) - t0 )) s (exit $status)"
if [ "$status" = 0 ]; then
  echo "Compare the runs in the MLflow UI: make ui  (then open http://127.0.0.1:5000)"
fi
exit "$status"
