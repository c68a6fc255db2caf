"""Plain-text and Markdown tables for metrics and dataset listings."""

from __future__ import annotations

from typing import Any, Sequence

from dgl_synergraph.evaluation.metrics import METRICS


def text_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], markdown: bool = False) -> str:
    cells = [[str(h) for h in headers]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    if markdown:
        lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |" for row in cells]
        lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    else:
        lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))) for row in cells]
        lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def metrics_table(by_split: dict[str, dict[str, float]], ks: Sequence[int] | None = None) -> str:
    """Rows = split x K, columns = metrics; reads ``{"valid": {...}, "test": {...}}``."""
    rows = []
    for split, values in by_split.items():
        found_ks = sorted({int(key.split("@")[1]) for key in values})
        for k in ks or found_ks:
            rows.append([split, k] + [values.get(f"{m}@{k}", float("nan")) for m in METRICS])
    return text_table(["split", "K", *METRICS], rows)
