"""The cluster's tracking server, for real: PostgreSQL + an S3-compatible store + basic auth.

A real PostgreSQL (Debian's ``postgresql`` binaries, a throwaway cluster on 127.0.0.1 and a free
port), a real S3-compatible server (``moto_server`` from ``moto[server]``) with a bucket made through
boto3, and ``infra/mlflow/serve.sh`` started with the environment the deployment templates give it
(database password URL-encoded, the Service's DNS name as allowed host, admin password and Flask
secret as from a Secret). Then:

- no or wrong credentials -> 401, also for the artifact proxy; a foreign Host header -> 403;
- a one-trial baseline sweep (``python experiments/baselines.py ... cluster=inprocess``: the trial
  in the sweep's process, with the same Trainer, hooks and ``RunWriter`` as a Ray worker) logs, as an
  ordinary user created through the auth API and with no S3 credentials anywhere in reach, its
  metrics and its best checkpoint and pictures; the checkpoint is an object in the S3 bucket, reads
  back through the server's proxy (``mlflow-artifacts:``) byte for byte, and nothing landed on the
  node's disk.

That the server's URI and credentials reach Ray's processes (which do not inherit the driver's
environment) is checked on the runtime environments seglab hands Ray, in
tests/platform/sweep/test_ray_env.py.

Skipped only when the PostgreSQL server binaries are absent (``scripts/setup_system.sh`` installs them).
"""
from __future__ import annotations

import glob
import hashlib
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, Optional
from urllib.parse import quote

import pytest

from .conftest import REPO, TINY_DATA, free_port

BIN = Path(sys.executable).parent
SERVE = REPO / "infra" / "mlflow" / "serve.sh"
BUCKET, PREFIX = "seglab-artifacts", "mlflow"
TEMPLATE = REPO / "infra" / "k8s" / "mlflow.yaml"  # the Deployment whose environment the server gets here
SERVICE_HOST = "mlflow.seglab.svc.cluster.local"  # the Kubernetes Service's DNS name
ADMIN_PASSWORD = "admin-password-for-tests-only"
USER, USER_PASSWORD = "trainer", "trainer-password-for-tests"
DB_PASSWORD = "p@ss%w0rd:/db"  # characters that need URL-encoding (and '%' escaping in basic_auth.ini)
S3_KEYS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": "us-east-1"}
EXPERIMENT = "tracking_server"
SWEEP_ARGS = ["sweep.models=[hrnet_w18_small_v1]", "trainer.epochs=1", "trainer.viz_samples=1",
              f"sweep.experiment={EXPERIMENT}", "cluster=inprocess", *TINY_DATA]


def _pg_bindir() -> Optional[Path]:
    """The newest PostgreSQL server's bin folder (Debian keeps it off PATH), else initdb on PATH."""
    found = [Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin") if (Path(p) / "initdb").is_file()]
    found.sort(key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    if found:
        return found[-1]
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb and (Path(initdb).parent / "pg_ctl").exists() else None


def _no_postgres_reason() -> Optional[str]:
    if PG_BIN is None:
        return ("PostgreSQL server binaries (initdb, pg_ctl) are absent: run scripts/setup_system.sh as root "
                "(apt-get install postgresql)")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no 'postgres' user to run initdb as (it refuses root)"
    return None


PG_BIN = _pg_bindir()
pytestmark = [pytest.mark.skipif(_no_postgres_reason() is not None, reason=str(_no_postgres_reason())),
              pytest.mark.xdist_group("tracking_server")]  # one pytest worker: the stack starts once


def _wait(what: str, ok, proc: Optional[subprocess.Popen], log: Optional[Path], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited ({proc.returncode}): {log.read_text()[-3000:] if log else ''}")
        try:
            if ok():
                return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{what} did not come up in {timeout:.0f} s: {log.read_text()[-3000:] if log else ''}")


def _stop_group(proc: Optional[subprocess.Popen]) -> None:
    if proc is None or proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


class Postgres:
    """A throwaway PostgreSQL cluster on 127.0.0.1 (password auth over TCP, socket in its folder).
    initdb refuses to run as root: as root it runs as the ``postgres`` user the Debian package made."""

    def __init__(self) -> None:
        self.port = free_port()
        self.user = "postgres" if os.geteuid() == 0 else None
        self.root = Path(tempfile.mkdtemp(prefix="seglab-pg-"))  # not under pytest's root-only tmp folder
        if self.user:
            os.chown(self.root, pwd.getpwnam(self.user).pw_uid, -1)
        self.data, self.log = self.root / "data", self.root / "postgres.log"
        self.superuser_password = "superuser-password"

    def _run(self, *args: str) -> None:
        out = subprocess.run([str(PG_BIN / args[0]), *args[1:]], user=self.user, cwd=self.root,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, f"{args[0]}: {out.stdout[-2000:]}{out.stderr[-2000:]}"

    def start(self) -> None:
        pwfile = self.root / "pw"
        pwfile.write_text(self.superuser_password + "\n")
        if self.user:
            os.chown(pwfile, pwd.getpwnam(self.user).pw_uid, -1)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--pwfile", str(pwfile), "--auth-local=trust",
                  "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync")
        # durability off: a test database (start-up and every MLflow migration are faster)
        opts = f"-h 127.0.0.1 -p {self.port} -k {self.root} -c fsync=off -c synchronous_commit=off " \
               f"-c full_page_writes=off"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", opts, "-w", "-t", "60", "start")

    def execute(self, *statements: str) -> None:
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", password=self.superuser_password,
                             dbname="postgres", autocommit=True) as conn:
            for sql in statements:
                conn.execute(sql)

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            subprocess.run([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"],
                           user=self.user, cwd=self.root, capture_output=True, timeout=60)
        shutil.rmtree(self.root, ignore_errors=True)


def _template_env() -> Dict[str, str]:
    """The literal (non-secret) variables the Kubernetes template gives the mlflow container."""
    import yaml

    if not TEMPLATE.exists():
        return {"MLFLOW_ALLOWED_HOSTS": f"mlflow,mlflow.seglab,mlflow.seglab.svc,{SERVICE_HOST}"}
    for doc in yaml.safe_load_all(TEMPLATE.read_text()):
        if doc and doc.get("kind") == "Deployment":
            for container in doc["spec"]["template"]["spec"]["containers"]:
                if container["name"] == "mlflow":
                    return {e["name"]: str(e["value"]) for e in container.get("env", []) if "value" in e}
    raise AssertionError(f"{TEMPLATE}: no Deployment with an 'mlflow' container")


def _server_env(pg: Postgres, s3_endpoint: str, port: int, tmp: Path) -> Dict[str, str]:
    """serve.sh's environment as the Kubernetes template sets it (allowed hosts and other literal
    settings read from it), with this machine's database, bucket, port and test secrets."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_"))}
    template = _template_env()
    assert SERVICE_HOST in template["MLFLOW_ALLOWED_HOSTS"].split(","), template
    env.update({k: v for k, v in template.items() if k.startswith("MLFLOW_") and "URI" not in k})
    env.update({
        "PATH": f"{BIN}:{env.get('PATH', '')}",
        "MLFLOW_BACKEND_STORE_URI": f"postgresql://mlflow:{quote(DB_PASSWORD, safe='')}@127.0.0.1:{pg.port}/mlflow",
        "MLFLOW_ARTIFACTS_DESTINATION": f"s3://{BUCKET}/{PREFIX}",
        "MLFLOW_HOST": "127.0.0.1",
        "MLFLOW_PORT": str(port),
        "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "MLFLOW_FLASK_SERVER_SECRET_KEY": "flask-secret-for-tests-only",
        "MLFLOW_S3_ENDPOINT_URL": s3_endpoint,
        "AWS_ACCESS_KEY_ID": S3_KEYS["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": S3_KEYS["aws_secret_access_key"],
        "AWS_DEFAULT_REGION": S3_KEYS["region_name"],
    })
    env["TMPDIR"] = str(tmp)  # serve.sh writes its private basic_auth.ini under $TMPDIR: the test's folder
    return env


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """PostgreSQL, moto's S3 and the MLflow server; yields a dict of what the tests need."""
    import boto3
    import requests

    tmp = tmp_path_factory.mktemp("tracking-server")
    pg = Postgres()
    moto: Optional[subprocess.Popen] = None
    server: Optional[subprocess.Popen] = None
    t0 = time.monotonic()
    try:
        pg.start()
        pg.execute(f"CREATE ROLE mlflow LOGIN PASSWORD '{DB_PASSWORD}'", "CREATE DATABASE mlflow OWNER mlflow")

        s3_port = free_port()
        s3_endpoint = f"http://127.0.0.1:{s3_port}"
        moto_log = tmp / "moto.log"
        with open(moto_log, "wb") as out:
            moto = subprocess.Popen([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(s3_port)],
                                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        _wait("moto_server", lambda: requests.get(f"{s3_endpoint}/moto-api/", timeout=1).ok, moto, moto_log)
        s3 = boto3.client("s3", endpoint_url=s3_endpoint, **S3_KEYS)
        s3.create_bucket(Bucket=BUCKET)

        port = free_port()
        uri = f"http://127.0.0.1:{port}"
        server_dir = tmp / "server"  # the server's working directory: its default ./mlartifacts would land here
        server_dir.mkdir()
        server_log = tmp / "server.log"
        with open(server_log, "wb") as out:
            server = subprocess.Popen(["bash", str(SERVE)], cwd=server_dir, env=_server_env(pg, s3_endpoint, port, tmp),
                                      stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        _wait("mlflow server", lambda: requests.get(f"{uri}/health", timeout=1).ok, server, server_log, timeout=90)
        started = time.monotonic() - t0
        yield {"uri": uri, "port": port, "s3": s3, "tmp": tmp, "server_dir": server_dir, "server_log": server_log,
               "started_s": started}
    finally:
        _stop_group(server)
        _stop_group(moto)
        pg.stop()


def _api(stack, path: str, *, auth=None, host: Optional[str] = None, method: str = "GET", **kw):
    import requests

    headers = {"Host": host} if host else {}
    return requests.request(method, f"{stack['uri']}{path}", auth=auth, headers=headers, timeout=30, **kw)


SEARCH = "/api/2.0/mlflow/experiments/search?max_results=1"


def test_credentials_are_required(stack):
    assert _api(stack, SEARCH).status_code == 401
    assert _api(stack, SEARCH, auth=("admin", "wrong-password-123")).status_code == 401
    assert _api(stack, "/api/2.0/mlflow-artifacts/artifacts/0/x/artifacts/y").status_code == 401
    assert _api(stack, SEARCH, auth=("admin", ADMIN_PASSWORD)).status_code == 200
    # the names the template lists (as clients send them: with the Service's port, or none) and loopback
    for name in _template_env()["MLFLOW_ALLOWED_HOSTS"].split(","):
        for host in (name.strip(), f"{name.strip()}:5000"):
            assert _api(stack, SEARCH, auth=("admin", ADMIN_PASSWORD), host=host).status_code == 200, host
    assert _api(stack, SEARCH, auth=("admin", ADMIN_PASSWORD), host=f"localhost:{stack['port']}").status_code == 200


def test_foreign_host_header_is_refused(stack):
    for host in ("evil.example.com", f"evil.example.com:{stack['port']}", f"{SERVICE_HOST}.evil.example.com"):
        answer = _api(stack, SEARCH, auth=("admin", ADMIN_PASSWORD), host=host)
        assert answer.status_code == 403, (host, answer.status_code, answer.text[:200])
        assert _api(stack, SEARCH, host=host).status_code == 403  # checked before credentials


def _sweep_env(stack, home: Path) -> Dict[str, str]:
    """The sweep's environment: the server's URI and a user's credentials, no S3 settings at all and
    no AWS credentials it could find elsewhere (files, instance metadata)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MLFLOW_", "AWS_", "BOTO")) and k != "SEGLAB_ARTIFACT_ROOT"}
    nowhere = str(home / "no-aws")
    env.update({
        "PATH": f"{BIN}:{env.get('PATH', '')}", "NO_ALBUMENTATIONS_UPDATE": "1", "SEGLAB_HOME": str(home),
        "MLFLOW_TRACKING_URI": stack["uri"], "MLFLOW_TRACKING_USERNAME": USER, "MLFLOW_TRACKING_PASSWORD": USER_PASSWORD,
        "AWS_SHARED_CREDENTIALS_FILE": nowhere, "AWS_CONFIG_FILE": nowhere, "AWS_EC2_METADATA_DISABLED": "true",
    })
    return env


def test_sweep_logs_through_the_server_into_the_bucket(stack, tmp_path, monkeypatch):
    import mlflow
    from mlflow.tracking import MlflowClient

    # an ordinary (non-admin) user, made through the auth API as an operator would
    made = _api(stack, "/api/2.0/mlflow/users/create", method="POST", auth=("admin", ADMIN_PASSWORD),
                json={"username": USER, "password": USER_PASSWORD})
    assert made.status_code == 200, made.text[:300]

    home = tmp_path / "node"
    home.mkdir()
    log = tmp_path / "sweep.log"
    t0 = time.monotonic()
    with open(log, "wb") as out:
        sweep = subprocess.Popen([sys.executable, "experiments/baselines.py", *SWEEP_ARGS], cwd=REPO,
                                 env=_sweep_env(stack, home), stdout=out, stderr=subprocess.STDOUT,
                                 start_new_session=True)
    try:
        rc = sweep.wait(timeout=240)
    finally:
        _stop_group(sweep)
    took = time.monotonic() - t0
    output = log.read_text(errors="replace")
    assert rc == 0, output[-6000:] + "\n--- server ---\n" + stack["server_log"].read_text()[-3000:]
    assert "trials one after another in this process" in output and "(no Ray)" in output, output[:3000]
    # the trial's writer neither buffered (server unreachable) nor had records refused (e.g. 401/403)
    assert "unreachable since" not in output and f"MLflow at {stack['uri']} refused" not in output, output[-6000:]

    for key, value in {"MLFLOW_TRACKING_USERNAME": USER, "MLFLOW_TRACKING_PASSWORD": USER_PASSWORD}.items():
        monkeypatch.setenv(key, value)
    client = MlflowClient(stack["uri"])
    exp = client.get_experiment_by_name(EXPERIMENT)
    assert exp is not None and exp.artifact_location.startswith("mlflow-artifacts:/"), exp
    trials = client.search_runs([exp.experiment_id], "tags.`seglab.kind` = 'trial'")
    assert len(trials) == 1
    run = trials[0]
    assert run.info.status == "FINISHED" and run.info.artifact_uri.startswith("mlflow-artifacts:/"), run.info
    for key in ("val_miou", "train_loss", "best_val_miou", "epoch_time_s"):
        assert [m.step for m in client.get_metric_history(run.info.run_id, key)] == [1], key
    assert "checkpoints/best.pt" in {a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")}

    # the checkpoint and the picture are objects in the bucket (the server put them there) ...
    listed = stack["s3"].list_objects_v2(Bucket=BUCKET, Prefix=f"{PREFIX}/")
    keys = {o["Key"]: o["Size"] for o in listed.get("Contents", [])}
    run_prefix = f"{PREFIX}/{exp.experiment_id}/{run.info.run_id}/artifacts/"
    ckpt_key = run_prefix + "checkpoints/best.pt"
    assert keys.get(ckpt_key, 0) > 0, sorted(keys)
    assert any(k.startswith(run_prefix + "viz/epoch_001/") and k.endswith(".png") for k in keys), sorted(keys)
    in_bucket = stack["s3"].get_object(Bucket=BUCKET, Key=ckpt_key)["Body"].read()

    # ... that read back through the server's proxy, byte for byte
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=f"{run.info.artifact_uri}/checkpoints/best.pt", dst_path=str(tmp_path / "back"),
        tracking_uri=stack["uri"])
    assert hashlib.sha256(Path(local).read_bytes()).digest() == hashlib.sha256(in_bucket).digest()

    # nothing landed on the node's (or the server's) disk as an MLflow artifact
    for folder in (home / "mlartifacts", stack["server_dir"] / "mlartifacts", REPO / "mlartifacts" / EXPERIMENT):
        assert not folder.exists(), folder
    assert not list(home.glob("runs/**/mlflow_spool/files/*")), "undelivered artifacts left in the spool"
    assert not list(home.glob("runs/**/mlflow_unsent*.jsonl")) and not list(home.glob("runs/**/mlflow_rejected*.jsonl"))
    print(f"\ntracking server: stack up in {stack['started_s']:.1f} s, sweep {took:.0f} s, "
          f"{len(keys)} objects in s3://{BUCKET}/{PREFIX}/ (checkpoint {keys[ckpt_key]} bytes)")
