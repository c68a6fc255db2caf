"""Training: negative sampler, the shared loop, run directories."""

from dgl_synergraph.training.runs import LoadedRun, load_run
from dgl_synergraph.training.sampler import NegativeSampler
from dgl_synergraph.training.trainer import RunResult, train

__all__ = ["LoadedRun", "NegativeSampler", "RunResult", "load_run", "train"]
