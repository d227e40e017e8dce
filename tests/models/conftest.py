import pytest
import torch

from seglab.models import build_model


@pytest.fixture(autouse=True)
def fast_cpu():
    """One thread with denormals flushed: tiny gradients (e.g. of the official N(0, 0.001) init) are
    denormal and 10-100x slower on CPU (flushing is per thread), and on a small shared VM the
    two-thread runs of the W48 models were erratic (1 s to 45 s) while one thread took ~1 s every time."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    yield
    torch.set_flush_denormal(False)
    torch.set_num_threads(threads)


def build_meta(name, **kwargs):
    """Build a model on the meta device (no memory, no compute): for counting."""
    with torch.device("meta"):
        return build_model(name, **kwargs)
