"""User errors from the entry scripts: one line naming the key, exit status 2, no traceback."""
import os
import subprocess
import sys

import pytest

from .conftest import REPO


@pytest.mark.parametrize("override,fragment", [
    ("model.name=no_such_model", "unknown model 'no_such_model'"),
    ("model.tau=-1", "model.tau must be > 0"),
    ("sweep.tau=[0.5,-1]", "sweep.tau values must be > 0"),
    ("loss.kappa=-0.5", "loss.kappa"),
    ("model.pretrained=/nonexistent/weights.pth", "/nonexistent/weights.pth"),
    ("dataset.name=nope", "unknown dataset 'nope'"),
    ("loss=ce loss.class_weights=cityscapes", "loss.class_weights has 19 values but dataset 'synthetic' has 9"),
    ("model.branch_stage=5", "model.branch_stage"),
    ("loss.criterion=focal", "loss.criterion"),
    ("sweep=ovenet_kappa_lambda_tau sweep.scheduler=hyperband", "sweep.scheduler must be null or one of asha"),
    ("dataset=cityscapes dataset.root=/nonexistent/cityscapes", "/nonexistent/cityscapes"),
    ("semeda_sweep.py loss.lambda2=-1", "loss.lambda2 must be"),
    ("semeda_sweep.py trainer.trimap_widths=[0,3]", "trainer.trimap_widths must be a list of distinct positive"),
    ("phgmm_sweep.py model.num_components=0", "model.num_components"),
    ("phgmm_sweep.py model=hrnet_w18_small_v1", "loss=phgmm needs a model with latents"),
])
def test_bad_input_is_one_line_before_ray(override, fragment, tmp_path):
    env = {**os.environ, "SEGLAB_HOME": str(tmp_path), "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/m.db"}
    args = override.split()
    script = args.pop(0) if args[0].endswith(".py") else "ovenet_sweep.py"
    proc = subprocess.run([sys.executable, f"experiments/{script}", *args, "trainer=tiny"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("seglab: error:"), proc.stderr
    assert fragment in err[0]
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not (tmp_path / "m.db").exists()  # nothing was started or created
