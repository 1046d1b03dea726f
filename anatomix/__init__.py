"""anatomix: synthetic, fully labelled 3D volumes with correct anatomy for segmentation pre-training."""

__version__ = "0.1.0"
