"""Moved to :mod:`seglab.platform.cluster` (``local``, ``listeners``, ``ddp``); this module keeps
the two names ``sweep.py`` and ``trainer.py`` import until they are split, and then goes."""
from seglab.platform.cluster.ddp import loopback_torch_config
from seglab.platform.cluster.local import init_ray

__all__ = ["init_ray", "loopback_torch_config"]
