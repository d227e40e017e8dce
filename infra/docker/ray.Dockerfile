# syntax=docker/dockerfile:1
# seglab's Ray image: the Ray head, the GPU workers and the RayJob submitter all run it (KubeRay), and
# the cluster launcher can use it instead of its setup commands (infra/README.md).
#
# Build from the repository root (the build context must hold pyproject.toml, constraints.txt, seglab/):
#   docker build -f infra/docker/ray.Dockerfile -t <YOUR_REGISTRY>/seglab-ray:2.60.0-py311-cu128 .
#
# Three versions must agree, and tests/infra/test_templates.py checks that they do:
#   - Ray: this base image's tag == constraints.txt's `ray==2.60.0` == the RayCluster's rayVersion;
#   - CUDA: the base image's `cu128` == the CUDA build of the torch wheel (TORCH_INDEX_URL below);
#   - torch 2.13.0, the version the CPU test suite runs.
# The rayproject/ray-ml images are no longer published; rayproject/ray:<ray>-py311-cu<XY> is the CUDA
# base (Python 3.11, conda in /home/ray/anaconda3, user `ray` uid 1000 gid 100, passwordless sudo).
FROM rayproject/ray:2.60.0-py311-cu128

# The CUDA 12.8 build of torch (pip's default index only has the CUDA 12.x build of the day, which may
# not match the base image's CUDA runtime).
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128

# The same environment seglab's Makefile sets; SEGLAB_HOME is the shared file system's mount point
# (a ReadWriteMany volume on Kubernetes, EFS / Filestore with the cluster launcher): Ray Train's
# storage_path and every run folder live there, so every node sees the same files.
ENV RAY_USAGE_STATS_ENABLED=0 \
    NO_ALBUMENTATIONS_UPDATE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SEGLAB_HOME=/mnt/seglab

# The project folder and the mount point belong to `ray` (uid 1000; pip builds the project in its folder).
USER 0
RUN mkdir -p /home/ray/seglab /mnt/seglab && chown 1000:100 /home/ray/seglab /mnt/seglab
USER 1000
WORKDIR /home/ray/seglab

# torch first, from the CUDA index, so that installing the project never pulls another torch build.
RUN pip install --no-cache-dir "torch==2.13.0" --index-url "${TORCH_INDEX_URL}"

# The package and its pinned dependencies (the versions CI tested). The base image's Ray is the pin
# already; the check below fails the build if anything moved Ray or torch.
COPY --chown=1000:100 pyproject.toml constraints.txt README.md ./
COPY --chown=1000:100 seglab/ seglab/
RUN pip install --no-cache-dir -c constraints.txt . \
    && python -c "import ray, torch; assert ray.__version__ == '2.60.0', ray.__version__; assert torch.__version__.split('+')[0] == '2.13.0', torch.__version__"

# The entry scripts and Hydra configs last: they change most often and are the cheapest layer.
COPY --chown=1000:100 experiments/ experiments/
