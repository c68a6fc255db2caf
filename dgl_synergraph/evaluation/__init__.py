"""Full-ranking evaluation: metric definitions and the batched evaluator."""

from dgl_synergraph.evaluation.evaluator import RankingEvaluator, split_evaluator
from dgl_synergraph.evaluation.metrics import METRICS, metric_sums

__all__ = ["METRICS", "RankingEvaluator", "metric_sums", "split_evaluator"]
