"""Training: negative sampling, the shared loop (``train``, ``resume``, ``train_epoch``), run
directories and sweeps."""

from dgl_synergraph.training.configure import build_config
from dgl_synergraph.training.trainer import RunResult, resume, train, train_epoch

__all__ = ["RunResult", "build_config", "resume", "train", "train_epoch"]
