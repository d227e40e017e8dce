"""Backbones: feature extractors returning a list of multi-resolution feature maps."""
from seglab.models.backbones.hrnet import HRNET_SPECS, HRNetBackbone, HRNetSpec, StageSpec

__all__ = ["HRNET_SPECS", "HRNetBackbone", "HRNetSpec", "StageSpec"]
