"""The deployment templates under infra/: parsed, linted and validated offline, and held to the project's rules.

Tools (dev dependencies; no network, no cloud credentials, no cluster):
- PyYAML + yamllint (strict, infra/.yamllint) for every YAML file;
- Ray's own launcher validation (``prepare_config`` + ``validate_config`` against the wheel's
  ray-schema.json) for infra/ray-up/*.yaml;
- the KubeRay CRD schemas in ../shared/schemas/kuberay, made strict (unknown keys fail), for RayCluster /
  RayJob; kubernetes-validate --strict for the pods those templates produce and the core objects;
- hadolint for the Dockerfiles; check-jsonschema's vendored compose-spec for the compose file.
Each tool also gets a broken input that it must reject, so that a test cannot pass by not running.
"""
from __future__ import annotations

import copy
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
K8S = INFRA / "k8s"
LAUNCHER_FILES = sorted((INFRA / "ray-up").glob("*.yaml"))
CRD_DIR = REPO.parent / "shared" / "schemas" / "kuberay"
K8S_VERSION = "1.33.0"  # a Kubernetes version kubernetes-validate bundles, supported by EKS / GKE / AKS
RAY_IMAGE_IN_CONTAINER = "/home/ray/seglab"  # WORKDIR of infra/docker/ray.Dockerfile: the repo's copy
PLACEHOLDER = re.compile(r"<YOUR_[A-Z0-9_]+>")

_load = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


# -- helpers ------------------------------------------------------------------------------------------

def _docs(path: Path) -> List[Dict[str, Any]]:
    return [d for d in yaml.load_all(path.read_text(), Loader=_load) if d is not None]


def _k8s_objects() -> List[Tuple[Path, Dict[str, Any]]]:
    return [(p, d) for p in sorted(K8S.glob("*.yaml")) for d in _docs(p)]


def _one(kind: str) -> Dict[str, Any]:
    found = [d for _, d in _k8s_objects() if d.get("kind") == kind]
    assert len(found) == 1, f"expected one {kind} in infra/k8s, found {len(found)}"
    return found[0]


def _tool(name: str) -> str:
    """A linter's executable: beside this interpreter (the venv) or on PATH."""
    exe = Path(sys.executable).parent / name
    if exe.exists():
        return str(exe)
    found = shutil.which(name)
    if not found:
        pytest.fail(f"{name} is not installed: `pip install -c constraints.txt -e .[dev]` brings it")
    return found


def _run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)


def _constraint(name: str) -> str:
    for line in (REPO / "constraints.txt").read_text().splitlines():
        m = re.match(rf"^{re.escape(name)}==(\S+)", line.strip(), re.IGNORECASE)
        if m:
            return m.group(1)
    raise AssertionError(f"constraints.txt pins no {name}")


def _ray_cluster_specs() -> Dict[str, Dict[str, Any]]:
    return {"RayCluster": _one("RayCluster")["spec"], "RayJob.rayClusterSpec": _one("RayJob")["spec"]["rayClusterSpec"]}


def _pod_templates() -> Iterator[Tuple[str, Dict[str, Any]]]:
    """(where, pod template) for every pod the RayCluster / RayJob make: head, each worker group, submitter."""
    for where, spec in _ray_cluster_specs().items():
        yield f"{where}.head", spec["headGroupSpec"]["template"]
        for group in spec["workerGroupSpecs"]:
            yield f"{where}.worker[{group['groupName']}]", group["template"]
    yield "RayJob.submitter", _one("RayJob")["spec"]["submitterPodTemplate"]


def _ray_node_templates() -> List[Tuple[str, Dict[str, Any]]]:
    return [(w, t) for w, t in _pod_templates() if not w.endswith("submitter")]


def _container_env(container: Dict[str, Any]) -> Dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def _runtime_env() -> Dict[str, Any]:
    return yaml.safe_load(_one("RayJob")["spec"]["runtimeEnvYAML"])


def _mlflow_service_url() -> str:
    svc = next(d for _, d in _k8s_objects() if d["kind"] == "Service" and d["metadata"]["name"] == "mlflow")
    port = svc["spec"]["ports"][0]["port"]
    return f"http://{svc['metadata']['name']}.{svc['metadata']['namespace']}.svc.cluster.local:{port}"


def _pvc() -> Dict[str, Any]:
    return _one("PersistentVolumeClaim")


def _shared_mount_path(template: Dict[str, Any]) -> str:
    """Where a pod template mounts the shared PVC (fails if it does not, or mounts it twice)."""
    spec = template["spec"]
    vols = [v["name"] for v in spec.get("volumes", [])
            if v.get("persistentVolumeClaim", {}).get("claimName") == _pvc()["metadata"]["name"]]
    assert len(vols) == 1, f"the pod does not use PVC {_pvc()['metadata']['name']} exactly once"
    paths = {m["mountPath"] for c in spec["containers"] for m in c.get("volumeMounts", []) if m["name"] == vols[0]}
    assert len(paths) == 1, f"the shared volume is mounted at {sorted(paths)} (want one path)"
    return paths.pop()


# -- every file: parses, yamllint-clean ---------------------------------------------------------------

def _yaml_files() -> List[Path]:
    return sorted(p for p in INFRA.rglob("*") if p.suffix in (".yaml", ".yml") or p.name == ".yamllint")


def test_every_infra_yaml_parses():
    files = _yaml_files()
    assert len(files) >= 10, files  # launcher x2, k8s, compose, .yamllint
    for path in files:
        assert _docs(path), f"{path} holds no YAML document"


def test_yamllint_strict_is_clean():
    res = _run(_tool("yamllint"), "--strict", "-f", "parsable", "-c", "infra/.yamllint", "infra")
    assert res.returncode == 0, res.stdout + res.stderr


def test_yamllint_rejects_a_sloppy_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("---\nkey:   value \nlist:\n- a\n-  b\nother: yes\n")  # spaces, trailing blank, truthy
    res = _run(_tool("yamllint"), "--strict", "-f", "parsable", "-c", "infra/.yamllint", str(bad))
    assert res.returncode != 0 and "trailing-spaces" in res.stdout, res.stdout


# -- Ray cluster launcher: Ray's own schema -------------------------------------------------------------

def _launcher(path: Path) -> Dict[str, Any]:
    return yaml.load(path.read_text(), Loader=_load)


def _ray_validate(cfg: Dict[str, Any]) -> Dict[str, Any]:
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(cfg))
    validate_config(prepared)
    return prepared


def test_launcher_files_are_there():
    assert {p.name for p in LAUNCHER_FILES} == {"aws-gpu.yaml", "gcp-gpu.yaml"}


@pytest.mark.parametrize("path", LAUNCHER_FILES, ids=lambda p: p.name)
def test_launcher_passes_rays_validation(path):
    prepared = _ray_validate(_launcher(path))
    assert prepared["provider"]["type"] == {"aws-gpu.yaml": "aws", "gcp-gpu.yaml": "gcp"}[path.name]


@pytest.mark.parametrize("path", LAUNCHER_FILES, ids=lambda p: p.name)
@pytest.mark.parametrize("breakage", ["no provider", "max_workers -1", "node type without resources",
                                      "unknown top-level key", "negative GPU count"])
def test_launcher_validation_rejects_broken_configs(path, breakage):
    import jsonschema

    cfg = _launcher(path)
    worker = next(n for n in cfg["available_node_types"] if n != cfg["head_node_type"])
    if breakage == "no provider":
        prepared = _ray_validate(cfg)  # prepare_config itself needs the provider; drop it afterwards
        del prepared["provider"]
        from ray.autoscaler._private.util import validate_config

        with pytest.raises(jsonschema.ValidationError, match="provider"):
            validate_config(prepared)
        return
    if breakage == "max_workers -1":
        cfg["max_workers"] = -1
    elif breakage == "node type without resources":
        del cfg["available_node_types"][worker]["resources"]
    elif breakage == "unknown top-level key":
        cfg["setup_comands"] = ["echo typo"]
    elif breakage == "negative GPU count":
        cfg["available_node_types"][worker]["resources"]["GPU"] = -1
    with pytest.raises(jsonschema.ValidationError):
        _ray_validate(cfg)


@pytest.mark.parametrize("path", LAUNCHER_FILES, ids=lambda p: p.name)
def test_launcher_head_is_cpu_only_and_gpu_workers_autoscale(path):
    cfg = _launcher(path)
    types = cfg["available_node_types"]
    head = types[cfg["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0 and head["resources"]["CPU"] >= 1
    assert head.get("max_workers", 0) == 0
    workers = {k: v for k, v in types.items() if k != cfg["head_node_type"]}
    assert workers, "no worker node type"
    for name, node in workers.items():
        res = node["resources"]
        assert res["CPU"] >= 1 and res["GPU"] >= 1, f"{name}: resources must state CPU and GPU explicitly"
        assert node["min_workers"] == 0, f"{name}: GPU nodes start at 0 and are added on demand"
        assert 1 <= node["max_workers"] <= cfg["max_workers"], name
    heads = " ".join(cfg["head_start_ray_commands"])
    assert "--num-gpus=0" in heads


@pytest.mark.parametrize("path", LAUNCHER_FILES, ids=lambda p: p.name)
def test_launcher_never_exposes_the_dashboard(path):
    cfg = _launcher(path)
    start = " ".join(cfg["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in start, "the dashboard must listen on loopback (ray dashboard tunnels to it)"
    assert "0.0.0.0" not in " ".join(cfg["head_start_ray_commands"] + cfg["worker_start_ray_commands"])
    assert "dashboard-port" not in start
    # No extra public firewall rule (AWS): Ray's own security group opens SSH only.
    assert "security_group" not in cfg["provider"]


@pytest.mark.parametrize("path", LAUNCHER_FILES, ids=lambda p: p.name)
def test_launcher_mounts_one_shared_file_system_everywhere(path):
    cfg = _launcher(path)
    mount = "/mnt/seglab"
    init = " ".join(cfg["initialization_commands"])
    fs = {"aws-gpu.yaml": "mount -t nfs4", "gcp-gpu.yaml": "mount -t nfs"}[path.name]
    assert fs in init and f" {mount})" in init, init
    # Global (not per node type) initialization and docker options: every node gets the same mount.
    assert not any("initialization_commands" in n or "docker" in n for n in cfg["available_node_types"].values())
    assert f"--volume={mount}:{mount}" in cfg["docker"]["run_options"]
    node_env = (INFRA / "ray-up" / "node-env.sh").read_text()
    assert f"export SEGLAB_HOME={mount}\n" in node_env
    for name in ("aws", "gcp"):
        if path.name.startswith(name):
            conf = yaml.safe_load((REPO / "experiments/conf/cluster" / f"{name}.yaml").read_text())
            assert str(conf["cluster"]["storage_path"]).startswith(mount + "/"), conf["cluster"]


@pytest.mark.parametrize("path", LAUNCHER_FILES, ids=lambda p: p.name)
def test_launcher_installs_the_pinned_project_and_starts_mlflow(path):
    cfg = _launcher(path)
    setup = cfg["setup_commands"]
    assert 'pip install --no-cache-dir "torch==2.13.0" --index-url https://download.pytorch.org/whl/' in setup[0]
    assert "-c /home/ray/seglab/constraints.txt" in setup[1]
    assert cfg["file_mounts"]["/home/ray/seglab"] == "."
    assert ".gitignore" in cfg["rsync_filter"]  # never ship .venv, stores or data
    assert f'"mlflow[auth,db]=={_constraint("mlflow")}"' in " ".join(cfg["head_setup_commands"])
    # The scripts the start commands run exist, and the settings file has its example.
    for cmd in cfg["head_start_ray_commands"] + cfg["worker_start_ray_commands"]:
        for rel in re.findall(r"/home/ray/seglab/(\S+\.sh)", cmd):
            assert (REPO / rel).is_file(), rel
    env_local = cfg["file_mounts"]["/home/ray/seglab-mlflow.env"]
    assert (REPO / (env_local + ".example")).is_file()
    assert Path(env_local).name in (INFRA / ".gitignore").read_text()
    assert "start-mlflow.sh" in " ".join(cfg["head_start_ray_commands"])
    assert "start-mlflow.sh" not in " ".join(cfg["worker_start_ray_commands"])


def test_launcher_scripts_are_valid_bash_and_start_serve_sh():
    for script in (INFRA / "ray-up").glob("*.sh"):
        res = _run("bash", "-n", str(script))
        assert res.returncode == 0, f"{script}: {res.stderr}"
    start = (INFRA / "ray-up" / "start-mlflow.sh").read_text()
    assert '"$HOME/seglab/infra/mlflow/serve.sh"' in start
    assert "MLFLOW_TRACKING_URI=\"http://${seglab_head_ip}:5000\"" in (INFRA / "ray-up" / "node-env.sh").read_text()


# -- KubeRay CRDs, strict ---------------------------------------------------------------------------------

def _strict(schema: Any) -> Any:
    """The CRD's OpenAPI schema with unknown keys forbidden: every object schema that lists its
    properties and neither sets additionalProperties nor preserves unknown fields gets
    additionalProperties: false (the API server prunes unknown fields silently; we want them to fail)."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) for k, v in schema.items()}
    if ("properties" in out and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


@pytest.fixture(scope="module")
def crd_validators():
    import jsonschema

    if not CRD_DIR.is_dir():
        pytest.skip(f"KubeRay CRD schemas not found at {CRD_DIR} (../shared/schemas/kuberay beside the repository; "
                    "CI and developer machines have it)")
    out = {}
    for kind, fname in (("RayCluster", "ray.io_rayclusters.yaml"), ("RayJob", "ray.io_rayjobs.yaml")):
        crd = yaml.load((CRD_DIR / fname).read_text(), Loader=_load)
        assert crd["spec"]["names"]["kind"] == kind
        version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
        schema = version["schema"]["openAPIV3Schema"]
        out[kind] = {"strict": jsonschema.Draft4Validator(_strict(schema)),
                     "plain": jsonschema.Draft4Validator(schema)}
    return out


def _errors(validator, doc) -> List[str]:
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


@pytest.mark.parametrize("kind", ["RayCluster", "RayJob"])
def test_kuberay_manifest_passes_the_strict_crd_schema(crd_validators, kind):
    doc = _one(kind)
    assert doc["apiVersion"] == "ray.io/v1"
    assert _errors(crd_validators[kind]["strict"], doc) == []


@pytest.mark.parametrize("kind, where, typo", [
    ("RayCluster", ("spec",), ("enableInTreeAutoscaling", "enableInTreeAutoscalling")),
    ("RayCluster", ("spec", "workerGroupSpecs", 0, "template", "spec"), ("tolerations", "toleration")),
    ("RayCluster", ("spec", "headGroupSpec", "template", "spec", "containers", 0), ("volumeMounts", "volumeMount")),
    ("RayJob", ("spec",), ("shutdownAfterJobFinishes", "shutdownAfterJobFinish")),
    ("RayJob", ("spec", "submitterPodTemplate", "spec"), ("restartPolicy", "restartpolicy")),
])
def test_strict_crd_schema_catches_a_misspelled_key(crd_validators, kind, where, typo):
    doc = copy.deepcopy(_one(kind))
    node = doc
    for key in where:
        node = node[key]
    right, wrong = typo
    node[wrong] = node.pop(right)
    strict = _errors(crd_validators[kind]["strict"], doc)
    assert any(wrong in e for e in strict), strict
    # The unmodified schema lets it through (the API server would prune it silently).
    assert _errors(crd_validators[kind]["plain"], doc) == []


def test_rayjob_runs_the_same_cluster_as_the_raycluster():
    specs = _ray_cluster_specs()
    assert specs["RayCluster"] == specs["RayJob.rayClusterSpec"]


# -- kubernetes-validate --strict: pods from the templates, and the core objects ---------------------------

def _pod(where: str, template: Dict[str, Any]) -> Dict[str, Any]:
    name = re.sub(r"[^a-z0-9-]+", "-", where.lower()).strip("-")
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {**copy.deepcopy(template.get("metadata", {})), "name": name, "namespace": "seglab"},
            "spec": copy.deepcopy(template["spec"])}


def _kubernetes_validate(tmp_path: Path, objects: List[Dict[str, Any]]) -> Tuple[int, str]:
    files = []
    for i, obj in enumerate(objects):
        f = tmp_path / f"{i:02d}-{obj['kind'].lower()}.yaml"
        f.write_text(yaml.safe_dump(obj, sort_keys=False))
        files.append(str(f))
    res = _run(_tool("kubernetes-validate"), "--strict", "-k", K8S_VERSION, *files)
    return res.returncode, res.stdout + res.stderr


def test_pod_templates_pass_kubernetes_validate_strict(tmp_path):
    pods = [_pod(w, t) for w, t in _pod_templates()]
    assert len(pods) == 5  # head + gpu worker, twice (RayCluster, RayJob), and the submitter
    rc, out = _kubernetes_validate(tmp_path, pods)
    assert rc == 0, out
    assert out.count(" passed for resource pod/") == len(pods), out  # none skipped for a missing schema


def test_core_objects_pass_kubernetes_validate_strict(tmp_path):
    core = [d for _, d in _k8s_objects() if "/" not in d["apiVersion"] or d["apiVersion"].split("/")[0] != "ray.io"]
    kinds = sorted(d["kind"] for d in core)
    for needed in ("Deployment", "Namespace", "NetworkPolicy", "PersistentVolumeClaim", "Secret", "Service",
                   "StatefulSet"):
        assert needed in kinds, kinds
    rc, out = _kubernetes_validate(tmp_path, core)
    assert rc == 0, out
    assert out.count(" passed for resource ") == len(core), out


def test_kubernetes_validate_rejects_a_misspelled_pod_key(tmp_path):
    where, template = next(_pod_templates())
    pod = _pod(where, template)
    pod["spec"]["containers"][0]["resource"] = pod["spec"]["containers"][0].pop("resources")
    rc, out = _kubernetes_validate(tmp_path, [pod])
    assert rc != 0 and "resource" in out, out


# -- project rules -----------------------------------------------------------------------------------------

def _dockerfile(name: str) -> str:
    return (INFRA / "docker" / name).read_text()


def test_ray_version_is_the_same_everywhere():
    ray_pin = _constraint("ray")
    import ray

    assert ray.__version__ == ray_pin, "the venv's Ray is not constraints.txt's pin"
    base = re.search(r"^FROM (\S+)", _dockerfile("ray.Dockerfile"), re.M).group(1)
    assert base.startswith(f"rayproject/ray:{ray_pin}-py311-cu"), base
    for path in LAUNCHER_FILES:
        assert _launcher(path)["docker"]["image"] == base, path.name
    for where, spec in _ray_cluster_specs().items():
        assert spec["rayVersion"] == ray_pin, where
    for where, template in _pod_templates():
        for c in template["spec"]["containers"]:
            tag = c["image"].rsplit(":", 1)[1]
            assert tag == base.split(":", 1)[1], f"{where}: image {c['image']} is not tagged like the base image"


def test_torch_and_cuda_versions_agree():
    dockerfile = _dockerfile("ray.Dockerfile")
    base_cuda = re.search(r"^FROM rayproject/ray:\S+-(cu\d+)$", dockerfile, re.M).group(1)
    assert f"ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/{base_cuda}\n" in dockerfile
    assert 'pip install --no-cache-dir "torch==2.13.0"' in dockerfile
    for path in LAUNCHER_FILES:
        cfg = _launcher(path)
        assert cfg["docker"]["image"].endswith(f"-{base_cuda}")
        assert f'"torch==2.13.0" --index-url https://download.pytorch.org/whl/{base_cuda}' in cfg["setup_commands"][0]
    assert "TORCH_SPEC ?= torch==2.13.0\n" in (REPO / "Makefile").read_text()  # the CPU test suite's torch


def test_images_install_the_pinned_project_and_mlflow():
    ray_df = _dockerfile("ray.Dockerfile")
    assert "pip install --no-cache-dir -c constraints.txt ." in ray_df
    assert f"ray.__version__ == '{_constraint('ray')}'" in ray_df
    mlflow_df = _dockerfile("mlflow.Dockerfile")
    assert f'"mlflow[auth,db]=={_constraint("mlflow")}"' in mlflow_df
    assert "COPY --chmod=0755 infra/mlflow/serve.sh /opt/seglab/serve.sh" in mlflow_df
    assert 'CMD ["/opt/seglab/serve.sh"]' in mlflow_df
    assert (REPO / "infra/mlflow/serve.sh").is_file()


def test_gpu_worker_groups_request_gpus_and_tolerate_the_taint():
    for where, spec in _ray_cluster_specs().items():
        head = spec["headGroupSpec"]
        assert head["rayStartParams"].get("num-gpus") == "0", f"{where}: the head is CPU only"
        for c in head["template"]["spec"]["containers"]:
            assert "nvidia.com/gpu" not in str(c.get("resources")), f"{where}: the head asks for a GPU"
        assert spec["workerGroupSpecs"], where
        for group in spec["workerGroupSpecs"]:
            label = f"{where}.{group['groupName']}"
            pod = group["template"]["spec"]
            gpus = [int(c["resources"]["limits"]["nvidia.com/gpu"]) for c in pod["containers"]
                    if "nvidia.com/gpu" in c.get("resources", {}).get("limits", {})]
            assert gpus and all(g >= 1 for g in gpus), f"{label}: no nvidia.com/gpu limit"
            assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod.get("tolerations", [])
            assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"], label
            assert group["maxReplicas"] >= 1, label


def test_autoscaler_v2_is_on():
    for where, spec in _ray_cluster_specs().items():
        assert spec["enableInTreeAutoscaling"] is True, where
        assert spec["autoscalerOptions"]["version"] == "v2", where


def test_every_ray_pod_has_a_memory_backed_dev_shm():
    for where, template in _ray_node_templates():
        spec = template["spec"]
        shm = [v["name"] for v in spec["volumes"] if v.get("emptyDir", {}).get("medium") == "Memory"]
        mounts = {m["mountPath"]: m["name"] for c in spec["containers"] for m in c.get("volumeMounts", [])}
        assert mounts.get("/dev/shm") in shm, f"{where}: /dev/shm is not a memory emptyDir"


def test_the_shared_volume_is_mounted_at_one_path_on_every_ray_pod():
    pvc = _pvc()
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    paths = {where: _shared_mount_path(t) for where, t in _ray_node_templates()}
    assert len(set(paths.values())) == 1, paths
    path = next(iter(paths.values()))
    for where, template in _ray_node_templates():
        for c in template["spec"]["containers"]:
            assert _container_env(c).get("SEGLAB_HOME") == path, f"{where}: SEGLAB_HOME is not the shared volume"
    assert _runtime_env()["env_vars"]["SEGLAB_HOME"] == path
    conf = yaml.safe_load((REPO / "experiments/conf/cluster/k8s.yaml").read_text())
    assert str(conf["cluster"]["storage_path"]).startswith(path + "/"), conf["cluster"]


def test_rayjob_entrypoint_runs_an_experiment_script_with_a_cluster_config():
    job = _one("RayJob")["spec"]
    argv = shlex.split(job["entrypoint"])
    assert argv[0] == "python", argv
    script = REPO / argv[1]
    assert argv[1].startswith("experiments/") and script.is_file(), f"{argv[1]} is not a script in experiments/"
    overrides = dict(a.split("=", 1) for a in argv[2:] if "=" in a)
    assert (REPO / "experiments/conf/cluster" / f"{overrides['cluster']}.yaml").is_file(), overrides
    # working_dir is the image's copy of this repository, so the relative path resolves there.
    assert _runtime_env()["working_dir"] == RAY_IMAGE_IN_CONTAINER
    assert f"WORKDIR {RAY_IMAGE_IN_CONTAINER}\n" in _dockerfile("ray.Dockerfile")


def test_rayjob_runtime_env_sets_the_tracking_uri_and_artifact_root():
    env = _runtime_env()["env_vars"]
    assert env["MLFLOW_TRACKING_URI"] == _mlflow_service_url()
    assert env["SEGLAB_ARTIFACT_ROOT"].startswith("mlflow-artifacts:")
    for where, template in _ray_node_templates():
        c_env = _container_env(template["spec"]["containers"][0])
        assert c_env["MLFLOW_TRACKING_URI"] == _mlflow_service_url(), where
        assert c_env["MLFLOW_TRACKING_USERNAME"] == "admin", where
        ref = c_env["MLFLOW_TRACKING_PASSWORD"]["secretKeyRef"]
        assert ref["name"] == _one("Secret")["metadata"]["name"] and ref["key"] in _one("Secret")["stringData"]


def test_rayjob_shuts_down_and_never_restarts_the_submitter():
    job = _one("RayJob")["spec"]
    assert job["shutdownAfterJobFinishes"] is True
    assert job["submitterPodTemplate"]["spec"]["restartPolicy"] == "Never"


def test_nccl_socket_ifname_is_set_on_the_gpu_workers():
    for where, spec in _ray_cluster_specs().items():
        for group in spec["workerGroupSpecs"]:
            env = _container_env(group["template"]["spec"]["containers"][0])
            assert env.get("NCCL_SOCKET_IFNAME"), f"{where}.{group['groupName']}"


def test_mlflow_server_runs_serve_sh_and_allows_its_service_name():
    deploy = _one("Deployment")
    container = deploy["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["/opt/seglab/serve.sh"]
    env = _container_env(container)
    host = _mlflow_service_url().split("//", 1)[1].rsplit(":", 1)[0]
    assert host in env["MLFLOW_ALLOWED_HOSTS"].split(",")
    assert env["MLFLOW_HOST"] == "0.0.0.0" and env["MLFLOW_PORT"] == "5000"
    assert env["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql://")
    assert env["MLFLOW_ARTIFACTS_DESTINATION"].startswith("s3://")
    for key in ("MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY"):
        assert "secretKeyRef" in env[key], f"{key} must come from the Secret"
    assert "$(MLFLOW_DB_PASSWORD)" in env["MLFLOW_BACKEND_STORE_URI"]  # never a literal password


def test_no_public_service_for_the_dashboard_or_mlflow():
    for path, doc in _k8s_objects():
        assert doc["kind"] != "Ingress", f"{path.name}: an Ingress needs its own authentication; document, don't ship"
        if doc["kind"] == "Service":
            assert doc["spec"].get("type", "ClusterIP") == "ClusterIP", f"{path.name}: {doc['metadata']['name']}"
    for where, spec in _ray_cluster_specs().items():
        head = spec["headGroupSpec"]
        assert head.get("serviceType", "ClusterIP") == "ClusterIP", where
        assert not head.get("enableIngress"), where


def test_secret_is_an_example_with_placeholders_only():
    secrets = [(p, d) for p, d in _k8s_objects() if d["kind"] == "Secret"]
    assert len(secrets) == 1
    path, secret = secrets[0]
    assert path.name.endswith(".example.yaml")
    assert "data" not in secret
    for key, value in secret["stringData"].items():
        assert PLACEHOLDER.fullmatch(value), f"{key}: {value!r} is not a <YOUR_...> placeholder"
    assert path.name.replace(".example", "") in (INFRA / ".gitignore").read_text()


def test_compose_binds_every_port_to_loopback_and_runs_serve_sh():
    compose = yaml.safe_load((INFRA / "compose/compose.yaml").read_text())
    published = 0
    for name, svc in compose["services"].items():
        for port in svc.get("ports", []):
            published += 1
            if isinstance(port, dict):
                assert port.get("host_ip") == "127.0.0.1", f"{name}: {port}"
            else:
                assert str(port).startswith("127.0.0.1:"), f"{name}: {port} is not bound to 127.0.0.1"
    assert published >= 1 and not compose["services"]["postgres"].get("ports")
    mlflow = compose["services"]["mlflow"]
    assert mlflow["build"]["dockerfile"] == "infra/docker/mlflow.Dockerfile"
    assert (INFRA / "compose" / mlflow["build"]["context"] / "infra/mlflow/serve.sh").resolve().is_file()
    assert mlflow["environment"]["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql://")


def test_compose_file_passes_the_compose_spec_schema():
    res = _run(_tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", "infra/compose/compose.yaml")
    assert res.returncode == 0, res.stdout + res.stderr


def test_compose_spec_schema_rejects_a_broken_file(tmp_path):
    compose = yaml.safe_load((INFRA / "compose/compose.yaml").read_text())
    compose["services"]["mlflow"]["depends_on"] = {"postgres": {"condition": "when_ready"}}
    bad = tmp_path / "compose.yaml"
    bad.write_text(yaml.safe_dump(compose))
    res = _run(_tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(bad))
    assert res.returncode != 0, res.stdout


@pytest.mark.parametrize("name", ["ray.Dockerfile", "mlflow.Dockerfile"])
def test_dockerfile_passes_hadolint(name):
    res = _run(_tool("hadolint"), "--no-color", f"infra/docker/{name}")
    assert res.returncode == 0, res.stdout + res.stderr


def test_hadolint_rejects_an_unpinned_base_image(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text(_dockerfile("ray.Dockerfile").replace("FROM rayproject/ray:2.60.0-py311-cu128",
                                                         "FROM rayproject/ray:latest"))
    res = _run(_tool("hadolint"), "--no-color", str(bad))
    assert res.returncode != 0 and "DL3007" in res.stdout, res.stdout


def test_every_placeholder_is_documented_in_the_readme():
    readme = (INFRA / "README.md").read_text()
    used = set()
    for path in INFRA.rglob("*"):
        if path.is_file() and path.name != "README.md":
            used |= set(PLACEHOLDER.findall(path.read_text(errors="replace")))
    assert used, "no placeholders found: the templates should have some"
    missing = sorted(p for p in used if f"`{p}`" not in readme)
    assert not missing, f"infra/README.md does not explain {missing}"


def test_readme_commands_name_existing_scripts_and_cluster_configs():
    text = "\n".join(p.read_text() for p in INFRA.rglob("*") if p.is_file() and p.suffix in (".md", ".yaml", ".sh"))
    runs = re.findall(r"python (experiments/\S+\.py)((?: +[\w.]+=\S+)*)", text)
    assert runs
    for script, args in runs:
        assert (REPO / script).is_file(), script
        for name in re.findall(r"cluster=(\w+)", args):
            assert (REPO / "experiments/conf/cluster" / f"{name}.yaml").is_file(), f"cluster={name}"
