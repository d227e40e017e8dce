# shellcheck shell=bash
# Sourced by the cluster launcher's start commands (aws-gpu.yaml, gcp-gpu.yaml) right before `ray start`
# on every node. Ray's workers and job drivers inherit the environment of the process that started Ray,
# so this is how the sweep driver and every trial worker find the shared file system and MLflow.
#
#   SEGLAB_HOME               the shared file system (EFS / Filestore), mounted at the same path everywhere
#   MLFLOW_TRACKING_URI       the tracking server on the head node (started by start-mlflow.sh), private IP
#   SEGLAB_ARTIFACT_ROOT      mlflow-artifacts:/ : artifacts go through the server (clients need no storage keys)
#   MLFLOW_TRACKING_USERNAME / _PASSWORD   basic auth: the admin user, password from ~/seglab-mlflow.env
export SEGLAB_HOME=/mnt/seglab
export RAY_USAGE_STATS_ENABLED=0
export NO_ALBUMENTATIONS_UPDATE=1
# On worker nodes the launcher sets RAY_HEAD_IP; on the head it is this machine's first (private) address.
seglab_head_ip=${RAY_HEAD_IP:-$(hostname -I | awk '{print $1}')}
export MLFLOW_TRACKING_URI="http://${seglab_head_ip}:5000"
export SEGLAB_ARTIFACT_ROOT="mlflow-artifacts:/"
export MLFLOW_TRACKING_USERNAME=admin
# Only the admin password is taken from the server's settings file (in a subshell: nothing else leaks).
MLFLOW_TRACKING_PASSWORD=$(. "$HOME/seglab-mlflow.env" && printf '%s' "$MLFLOW_AUTH_ADMIN_PASSWORD")
export MLFLOW_TRACKING_PASSWORD
unset seglab_head_ip
