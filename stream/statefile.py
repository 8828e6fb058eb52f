"""Objects as a JSON document plus raw arrays: how a checkpoint saves a learner without pickling it.

:func:`encode` walks an object tree and returns its JSON document; every tensor and numpy array in it goes to
``write`` as raw bytes, in order, and the document names it by number with its dtype and shape. An instance of a
class is written as its class name and its ``__getstate__()``; only classes from :data:`ALLOWED_MODULES` (the
learner's own parts, torch's modules and optimizers) and :data:`ALLOWED_CLASSES` may be, so :func:`decode` never
constructs anything else and runs no code named by the file (unlike ``pickle``, whose file can call any function).
An object met twice is written once and comes back as one object (a parameter and the optimizer state keyed by it).
A long list of strings (the catalog's item ids) and a long string-to-int mapping (their rows) are written as arrays
too (the strings' UTF-8 bytes and where each ends; the ints): walking a million entries one by one in Python took
seconds of a checkpoint at a million items, on a thread that shares the interpreter with the event loop. A
:class:`~learners.types.ByteStream` (the ANN index's serialisation) is written as the chunks it produces, with no
copy of the whole, and read back as one uint8 array.

The document, for a config dataclass, reads as its fields::

    {"__object__": "learners.training:TrainingConfig", "__id__": 3, "state": {"__dict__": {"learning_rate": 0.004,
    ...}}}

>>> import io, torch
>>> chunks = []
>>> doc = encode({"w": torch.ones(2), "n": (1, "a"), 7: {1.5}}, lambda b: chunks.append(bytearray(b)))
>>> back = decode(doc, chunks)
>>> back["w"].tolist(), back["n"], back[7]
([1.0, 1.0], (1, 'a'), {1.5})
"""

from __future__ import annotations

import collections
import importlib
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from learners.types import ByteStream

#: Modules whose classes a state file may name: the learner's parts, torch's modules and optimizers.
ALLOWED_MODULES = ("learners.", "torch.nn.modules.", "torch.optim.")
#: Other classes a state file may name.
ALLOWED_CLASSES = {"random:Random"}
_DEFAULT_FACTORIES: dict[str, Callable[[], Any]] = {"dict": dict, "list": list, "set": set, "int": int}


class StateFileError(ValueError):
    """A state file (or an object to write to one) that this module cannot handle; the message says where."""


def _class_name(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def allowed(name: str) -> bool:
    """True when class ``name`` (``module:qualname``) may be written and read.

    >>> allowed("learners.training:TrainingConfig"), allowed("os:system"), allowed("builtins:eval")
    (True, False, False)
    """
    module = name.partition(":")[0] + "."
    return name in ALLOWED_CLASSES or module.startswith(ALLOWED_MODULES)


#: A :class:`~learners.types.ByteStream`'s chunks smaller than this are joined into arrays of up to this size.
STREAM_CHUNK = 1 << 20
#: Lists and mappings at least this long take the array forms (``__strs__``, ``__strints__``) when they fit them.
LONG = 64
_Where = str | tuple[Any, Any]  # the path to an entry, rendered (by _at) only for an error message


def _at(where: _Where) -> str:
    """``where`` as text: a chain of (parent, key) pairs ends in the root's name; an int key is a list's index, a
    str key an attribute's or field's name, a 1-tuple a mapping's key.

    >>> _at(((("root", "learner"), 3), ("k",)))
    "root.learner[3]['k']"
    """
    keys: list[str] = []
    while isinstance(where, tuple):
        where, key = where
        keys.append(f"[{key}]" if isinstance(key, int) else f"[{_short(key[0])}]" if isinstance(key, tuple) else f".{key}")
    return where + "".join(reversed(keys))


def _short(key: Any, most: int = 60) -> str:
    """``repr(key)``, cut to ``most`` characters (an optimizer's state is keyed by whole tensors)."""
    text = repr(key)
    return text if len(text) <= most else text[: most - 3] + "..."


def encode(obj: Any, write: Callable[[memoryview], None]) -> Any:
    """The JSON document of ``obj``; each array's bytes go to ``write`` as they are met."""
    return _Writer(write).enc(obj, "root")


def decode(doc: Any, arrays: Sequence[bytes | bytearray]) -> Any:
    """The object :func:`encode` wrote as ``doc`` and ``arrays`` (the bytes passed to ``write``, in order)."""
    return _Reader(arrays).dec(doc)


class _Writer:
    def __init__(self, write: Callable[[memoryview], None]) -> None:
        self.write = write
        self.arrays = 0
        self.memo: dict[int, int] = {}  # id(object) -> its __id__
        self.alive: list[Any] = []  # objects made while encoding (states, CPU copies): ids must not be reused

    def _array(self, raw: np.ndarray) -> int:
        flat = np.ascontiguousarray(raw).reshape(-1)  # 1-D: a memoryview of a (0, n) array cannot be cast to bytes
        self.write(memoryview(flat.view(np.uint8)))
        self.arrays += 1
        return self.arrays - 1

    def _stream(self, o: ByteStream) -> Any:
        """The chunks ``o`` produces, each an array of the file (small ones joined up to ``STREAM_CHUNK`` bytes)."""
        first, pending = self.arrays, [bytearray()]  # a new buffer after each flush: ``write`` may keep the old

        def flush() -> None:
            if pending[0]:
                self._array(np.frombuffer(pending[0], dtype=np.uint8))
                pending[0] = bytearray()

        def emit(chunk: bytes) -> int:
            if len(pending[0]) + len(chunk) > STREAM_CHUNK:
                flush()
            if len(chunk) >= STREAM_CHUNK:
                self._array(np.frombuffer(chunk, dtype=np.uint8))
            else:
                pending[0].extend(chunk)
            return len(chunk)

        o.produce(emit)
        flush()
        return {"__chunks__": first, "count": self.arrays - first}

    def _strs(self, o: list[str]) -> Any:
        joined = "".join(o)
        if joined.isascii():  # a character per byte: no string encoded one by one
            blob, sizes = joined.encode("ascii"), map(len, o)
        else:
            raw = [v.encode("utf-8", "surrogatepass") for v in o]  # a lone surrogate (valid JSON) stays as it was
            blob, sizes = b"".join(raw), map(len, raw)
        ends = np.cumsum(np.fromiter(sizes, dtype=np.int64, count=len(o)))
        return {"__strs__": self._array(np.frombuffer(blob, dtype=np.uint8)), "ends": self._array(ends)}

    def enc(self, o: Any, where: _Where) -> Any:
        if o is None or isinstance(o, bool | str):
            return o
        if isinstance(o, int) and type(o) is int:
            return o
        if type(o) is float:
            return o if math.isfinite(o) else {"__float__": repr(o)}
        if isinstance(o, np.generic):
            return {"__npscalar__": o.dtype.str, "value": self.enc(o.item(), where)}
        if type(o) is tuple:
            return {"__tuple__": [self.enc(v, (where, i)) for i, v in enumerate(o)]}
        if type(o) is list:
            if len(o) >= LONG and set(map(type, o)) == {str}:
                return self._strs(o)
            return [self.enc(v, (where, i)) for i, v in enumerate(o)]
        if type(o) in (set, frozenset):
            return {f"__{type(o).__name__}__": [self.enc(v, where) for v in o]}
        if type(o) is collections.deque:
            return {"__deque__": [self.enc(v, where) for v in o], "maxlen": o.maxlen}
        if type(o) is bytes:
            return {"__bytes__": self._array(np.frombuffer(o, dtype=np.uint8))}
        if isinstance(o, torch.device):
            return {"__device__": str(o)}
        if isinstance(o, torch.dtype):
            return {"__torch_dtype__": str(o).removeprefix("torch.")}
        if type(o) is ByteStream:
            return self._stream(o)
        if type(o) in (dict, collections.OrderedDict, collections.defaultdict):
            return self._mapping(o, where)
        ref = self.memo.get(id(o))
        if ref is not None:
            return {"__ref__": ref}
        self.memo[id(o)] = ident = len(self.memo)
        self.alive.append(o)
        if isinstance(o, torch.Tensor):
            return self._tensor(o, ident, where)
        if isinstance(o, np.ndarray):
            if o.dtype.hasobject:
                raise StateFileError(f"checkpoint: {_at(where)}: an array of Python objects cannot be saved")
            return {"__ndarray__": self._array(o), "__id__": ident, "dtype": o.dtype.str, "shape": list(o.shape)}
        if isinstance(o, np.random.Generator):
            bits = o.bit_generator
            if type(bits) is not np.random.PCG64:
                raise StateFileError(f"checkpoint: {_at(where)}: a {type(bits).__name__} generator cannot be saved")
            return {"__rng__": self.enc(bits.state, where), "__id__": ident}
        name = _class_name(type(o))
        if not allowed(name):
            raise StateFileError(f"checkpoint: {_at(where)}: a {name} cannot be saved (not among the allowed classes)")
        state = o.__getstate__()
        self.alive.append(state)
        return {"__object__": name, "__id__": ident, "state": self.enc(state, (where, type(o).__name__))}

    def _mapping(self, o: dict[Any, Any], where: _Where) -> Any:
        if type(o) is dict and set(map(type, o)) <= {str}:
            if len(o) >= LONG and set(map(type, o.values())) == {int}:
                try:
                    values = np.fromiter(o.values(), dtype=np.int64, count=len(o))
                except OverflowError:  # an int past 64 bits: the entries one by one below
                    pass
                else:
                    return {"__strints__": self._strs(list(o)), "values": self._array(values)}
            return {"__dict__": {k: self.enc(v, (where, k)) for k, v in o.items()}}
        pairs = [[self.enc(k, where), self.enc(v, (where, (k,)))] for k, v in o.items()]
        if type(o) is collections.defaultdict:
            factory = getattr(o.default_factory, "__name__", "")
            if factory not in _DEFAULT_FACTORIES:
                raise StateFileError(f"checkpoint: {_at(where)}: a defaultdict of {o.default_factory!r} cannot be "
                                     "saved")
            return {"__defaultdict__": pairs, "factory": factory}
        return {"__odict__" if type(o) is collections.OrderedDict else "__pairs__": pairs}

    def _tensor(self, t: torch.Tensor, ident: int, where: _Where) -> Any:
        if t.layout != torch.strided:
            raise StateFileError(f"checkpoint: {_at(where)}: a {t.layout} tensor cannot be saved")
        flat = t.detach().cpu().contiguous().reshape(-1)
        self.alive.append(flat)
        raw = flat.view(torch.uint8).numpy() if flat.numel() else np.zeros(0, dtype=np.uint8)
        return {"__tensor__": self._array(raw), "__id__": ident, "dtype": str(t.dtype).removeprefix("torch."),
                "shape": list(t.shape), "device": str(t.device), "parameter": isinstance(t, torch.nn.Parameter),
                "requires_grad": t.requires_grad}


class _Reader:
    def __init__(self, arrays: Sequence[bytes | bytearray]) -> None:
        self.arrays = arrays
        self.memo: dict[int, Any] = {}

    def dec(self, d: Any) -> Any:
        if d is None or isinstance(d, bool | int | float | str):
            return d
        if isinstance(d, list):
            return [self.dec(v) for v in d]
        if not isinstance(d, dict):
            raise StateFileError(f"checkpoint: unexpected {type(d).__name__} in the document")
        if "__dict__" in d:
            return {k: self.dec(v) for k, v in d["__dict__"].items()}
        if "__strs__" in d:
            return self._strs(d)
        if "__strints__" in d:
            values = np.frombuffer(self._buf(d["values"]), dtype=np.int64).tolist()
            return dict(zip(self._strs(d["__strints__"]), values, strict=True))
        if "__pairs__" in d:
            return {self.dec(k): self.dec(v) for k, v in d["__pairs__"]}
        if "__odict__" in d:
            return collections.OrderedDict((self.dec(k), self.dec(v)) for k, v in d["__odict__"])
        if "__defaultdict__" in d:
            factory = _DEFAULT_FACTORIES.get(d.get("factory", ""))
            if factory is None:
                raise StateFileError(f"checkpoint: a defaultdict of {d.get('factory')!r} is not allowed")
            return collections.defaultdict(factory, ((self.dec(k), self.dec(v)) for k, v in d["__defaultdict__"]))
        if "__tuple__" in d:
            return tuple(self.dec(v) for v in d["__tuple__"])
        if "__set__" in d:
            return {self.dec(v) for v in d["__set__"]}
        if "__frozenset__" in d:
            return frozenset(self.dec(v) for v in d["__frozenset__"])
        if "__deque__" in d:
            return collections.deque((self.dec(v) for v in d["__deque__"]), d.get("maxlen"))
        if "__float__" in d:
            return float(d["__float__"])
        if "__npscalar__" in d:
            return np.dtype(d["__npscalar__"]).type(self.dec(d["value"]))
        if "__bytes__" in d:
            return bytes(self._buf(d["__bytes__"]))
        if "__chunks__" in d:
            parts = [np.frombuffer(self._buf(i), dtype=np.uint8)
                     for i in range(d["__chunks__"], d["__chunks__"] + d["count"])]
            return parts[0] if len(parts) == 1 else np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint8)
        if "__device__" in d:
            return torch.device(d["__device__"])
        if "__torch_dtype__" in d:
            return _torch_dtype(d["__torch_dtype__"])
        if "__ref__" in d:
            return self.memo[d["__ref__"]]
        return self._made(d)

    def _buf(self, i: Any) -> bytes | bytearray:
        """Array ``i`` of the file; a number the file does not have is a :class:`StateFileError` (a damaged file)."""
        if type(i) is not int or not 0 <= i < len(self.arrays):
            raise StateFileError(f"checkpoint: the document names array {i!r}; the file has {len(self.arrays)}")
        return self.arrays[i]

    def _strs(self, d: dict[str, Any]) -> list[str]:
        raw = bytes(self._buf(d["__strs__"]))
        ends = np.frombuffer(self._buf(d["ends"]), dtype=np.int64).tolist()
        if ends and ends[-1] != len(raw):
            raise StateFileError("checkpoint: a list of strings whose sizes do not add up")
        text = raw.decode("ascii") if raw.isascii() else None
        if text is not None:
            return [text[a:b] for a, b in zip([0, *ends][:-1], ends, strict=True)]
        return [raw[a:b].decode("utf-8", "surrogatepass") for a, b in zip([0, *ends][:-1], ends, strict=True)]

    def _made(self, d: dict[str, Any]) -> Any:
        ident = d["__id__"]
        if "__tensor__" in d:
            out: Any = self._tensor(d)
        elif "__ndarray__" in d:
            buf = self._buf(d["__ndarray__"])
            out = np.frombuffer(buf, dtype=np.dtype(d["dtype"])).reshape(d["shape"])
        elif "__rng__" in d:
            out = np.random.Generator(np.random.PCG64())
            out.bit_generator.state = self.dec(d["__rng__"])
        elif "__object__" in d:
            name = d["__object__"]
            if not allowed(name):
                raise StateFileError(f"checkpoint: names a {name}, which is not among the allowed classes")
            module, _, qualname = name.partition(":")
            cls: Any = importlib.import_module(module)
            for part in qualname.split("."):
                cls = getattr(cls, part)
            out = cls.__new__(cls)
            self.memo[ident] = out  # before its state, which may refer back to it
            _set_state(out, self.dec(d["state"]))
            return out
        else:
            raise StateFileError(f"checkpoint: unknown entry {sorted(d)[:3]} in the document")
        self.memo[ident] = out
        return out

    def _tensor(self, d: dict[str, Any]) -> torch.Tensor:
        dtype, shape = _torch_dtype(d["dtype"]), d["shape"]
        buf = self._buf(d["__tensor__"])
        t = torch.frombuffer(buf, dtype=dtype).reshape(shape) if len(buf) else torch.zeros(shape, dtype=dtype)
        device = torch.device(d.get("device", "cpu"))
        if device.type != "cpu":
            if device.type == "cuda" and not torch.cuda.is_available():
                raise StateFileError(f"checkpoint: saved with tensors on {device}, which this machine lacks")
            t = t.to(device)
        if d.get("parameter"):
            return torch.nn.Parameter(t, requires_grad=bool(d.get("requires_grad")))
        return t.requires_grad_(True) if d.get("requires_grad") else t


def _torch_dtype(name: str) -> torch.dtype:
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise StateFileError(f"checkpoint: unknown tensor dtype {name!r}")
    return dtype


def _set_state(obj: Any, state: Any) -> None:
    """What unpickling does with ``state``: ``__setstate__``, else the instance dict and slots."""
    setter = getattr(type(obj), "__setstate__", None)
    if setter is not None:
        setter(obj, state)
        return
    slots: dict[str, Any] = {}
    if isinstance(state, tuple):
        state, slots = state[0], state[1] or {}
    if state:
        obj.__dict__.update(state)
    for name, value in slots.items():
        object.__setattr__(obj, name, value)

