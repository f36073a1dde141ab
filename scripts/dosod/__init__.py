"""DOSOD in PyTorch: the YOLOv8-based open-set detector of arXiv 2412.14680, with state-dict
keys and shapes identical to the official mmyolo/DOSOD checkpoints (dev-time only; needs torch)."""

from .config import PRESETS, DosodConfig, preset
from .model import DosodDetector

__all__ = ["PRESETS", "DosodConfig", "DosodDetector", "preset"]
