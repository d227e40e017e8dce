"""Heads: map backbone features to dense per-pixel outputs."""
from seglab.models.heads.hrnet_head import HRNetV2Head

__all__ = ["HRNetV2Head"]
