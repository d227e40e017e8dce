"""seglab: a Ray-distributed experiment platform for semantic-segmentation research."""

__version__ = "0.1.0"
