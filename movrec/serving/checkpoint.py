"""movrec's checkpoint format: tensors, strings and numbers only, sealed by a checksum, written
atomically, read with ``torch.load(weights_only=True)``.

Everything that reads or writes a checkpoint goes through here: Lightning's fit, resume and
test (the :class:`SafeCheckpointIO` plugin), and the serving commands (:class:`Checkpoint`).
A file that needs Python objects to load is refused in one line naming the file, unless the
user trusts it explicitly (``--trust-checkpoint``, ``trust_checkpoint=true``).
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import re
import struct
import sys
from dataclasses import fields, is_dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from movrec.atomic import atomic_write
from movrec.data import DATAMODULES, FittedDataModule
from movrec.data.features import FeaturePipeline
from movrec.data.preprocessing import Preprocessing
from movrec.data.sources import SOURCES
from movrec.errors import MissingFileError, UserError
from movrec.models.regressor import OPTIMIZERS, SCHEDULERS, RatingRegressor

SEAL = "movrec_seal"  # {"format": FORMAT, "checksum": sha256 of everything else}
FORMAT = 2  # 2: lists of only strings or only integers are hashed whole (1: item by item)
TRUST_HINT = "pass --trust-checkpoint (train.py: trust_checkpoint=true) only for a file you trust"


def checksum(value: Any, form: int = FORMAT) -> str:
    """SHA-256 over the checkpoint's content in a canonical form (that of seal format
    ``form``). It also proves the content is plain: anything but tensors, containers,
    strings, numbers and the data sources is a bug in what movrec saves (a TypeError here,
    not a checkpoint that cannot be read)."""
    digest = hashlib.sha256()
    _update(digest, value, form >= 2)
    return digest.hexdigest()


def _whole(items: list | tuple) -> bytes | None:
    """A list of only strings or only integers as one byte string (a vocabulary of thousands
    of words is hashed in one call, not thousands: the checkpoint of every epoch pays it)."""
    if not items:
        return None
    kind = type(items[0])
    if kind not in (str, int) or not all(type(item) is kind for item in items):
        return None
    if kind is str:
        encoded = [item.encode() for item in items]
        lengths = np.fromiter(map(len, encoded), dtype="<u8", count=len(encoded))
        return b"s" + lengths.tobytes() + b"".join(encoded)
    try:
        return b"i" + np.array(items, dtype="<i8").tobytes()
    except OverflowError:
        return None


def _update(digest: Any, value: Any, whole_lists: bool = True) -> None:
    def tag(kind: bytes, payload: bytes = b"") -> None:
        digest.update(kind + struct.pack("<Q", len(payload)) + payload)

    if isinstance(value, torch.Tensor):
        data = value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()
        tag(b"T", f"{value.dtype}{tuple(value.shape)}".encode())
        digest.update(b"t" + struct.pack("<Q", data.nbytes))
        digest.update(memoryview(data))  # no copy of the weights
    elif isinstance(value, dict):
        tag(b"D", str(len(value)).encode())
        for key, item in value.items():
            _update(digest, key, whole_lists)
            _update(digest, item, whole_lists)
    elif isinstance(value, list | tuple):
        tag(b"L" if isinstance(value, list) else b"U", str(len(value)).encode())
        packed = _whole(value) if whole_lists else None
        if packed is not None:
            digest.update(packed)
            return
        for item in value:
            _update(digest, item, whole_lists)
    elif isinstance(value, str):
        tag(b"S", value.encode())
    elif isinstance(value, bool) or value is None:
        tag(b"B", repr(value).encode())
    elif isinstance(value, int):
        tag(b"I", str(value).encode())
    elif isinstance(value, float):
        tag(b"F", value.hex().encode())
    elif isinstance(value, SOURCES) and is_dataclass(value):  # registered safe by torch
        tag(b"C", type(value).__qualname__.encode())
        _update(digest, {f.name: getattr(value, f.name) for f in fields(value)}, whole_lists)
    else:
        raise TypeError(f"not a plain checkpoint value: {type(value).__qualname__}")


def sealed(checkpoint: dict[str, Any]) -> dict[str, Any]:
    content = {k: v for k, v in checkpoint.items() if k != SEAL}
    return {**content, SEAL: {"format": FORMAT, "checksum": checksum(content)}}


def save_checkpoint(checkpoint: dict[str, Any], path: str | Path) -> None:
    buffer = io.BytesIO()
    torch.save(sealed(checkpoint), buffer)
    atomic_write(path, buffer.getvalue())


def read_checkpoint(
    path: str | Path, map_location: Any = "cpu", trust: bool = False
) -> dict[str, Any]:
    """The checkpoint at ``path``, its checksum verified; a user error names the file."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"checkpoint not found: {path}")
    if path.stat().st_size == 0:
        raise UserError(f"{path}: empty file, not a checkpoint")
    try:
        raw = torch.load(path, map_location=map_location, weights_only=not trust)
    except Exception as error:  # noqa: BLE001  (any failure to parse the file is the file's)
        found = re.search(r"GLOBAL ([\w.]+)", str(error))
        if isinstance(error, pickle.UnpicklingError) and found:
            raise UserError(
                f"{path}: refused: it holds Python objects ({found.group(1)}) that would run "
                f"code when loaded; movrec checkpoints hold only tensors and plain values. "
                f"{TRUST_HINT}"
            ) from None
        detail = re.search(r"WeightsUnpickler error:\s*(\S.*)", str(error))
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        reason = detail.group(1) if detail else (lines[0] if lines else type(error).__name__)
        raise UserError(f"{path}: damaged or truncated, cannot be read ({reason})") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path}: not a checkpoint")
    seal = raw.get(SEAL)
    if not isinstance(seal, dict) or "checksum" not in seal:
        if trust:
            return upgrade(raw, path)
        raise UserError(f"{path}: no movrec checksum (an older or foreign file); {TRUST_HINT}")
    content = {k: v for k, v in raw.items() if k != SEAL}
    try:
        intact = checksum(content, seal.get("format", 1)) == seal["checksum"]
    except TypeError:
        intact = False
    if not intact:
        raise UserError(f"{path}: damaged: its contents do not match its checksum")
    return content


def upgrade(raw: dict[str, Any], path: Path) -> dict[str, Any]:
    """A trusted checkpoint of movrec 0.2 (settings as callables, features pickled) in
    today's plain form; anything else is returned as it is."""
    hparams = raw.get("hyper_parameters", {})
    if isinstance(hparams.get("net"), partial):
        hparams["net"] = dict(hparams["net"].keywords)
    for key, registry in (("optimizer", OPTIMIZERS), ("scheduler", SCHEDULERS)):
        factory = hparams.get(key)
        if isinstance(factory, partial):
            names = [n for n, cls in registry.items() if cls is factory.func]
            if not names:
                raise UserError(f"{path}: its {key} {factory.func.__name__} is not supported")
            hparams[key] = {"name": names[0], **factory.keywords}
    for name in DATAMODULES:
        features = ((raw.get(name) or {}).get("preprocessing") or {}).get("features")
        if features and "transformer" in features:
            pipeline = FeaturePipeline.from_state({**features, "names": [], "parts": []})
            pipeline.use(pickle.loads(features.pop("transformer")))  # trusted by the user
            features.update(pipeline.state_dict())
    return raw


class SafeCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint I/O with movrec's format: sealed, atomic, weights-only reads."""

    def __init__(self, trust: bool = False) -> None:
        super().__init__()
        self.trust = trust

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        save_checkpoint(checkpoint, path)

    def load_checkpoint(
        self, path: Any, map_location: Any | None = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        return read_checkpoint(path, map_location or "cpu", trust=self.trust)


class Checkpoint:
    """A movrec checkpoint, read and verified once; the module and the datamodule are rebuilt
    from its saved settings and fitted state (nothing is refitted)."""

    def __init__(self, path: str | Path, map_location: str = "cpu", trust: bool = False):
        self.path = Path(path)
        self.raw = read_checkpoint(self.path, map_location, trust)
        found = [n for n in DATAMODULES if (self.raw.get(n) or {}).get("preprocessing")]
        if not {"hyper_parameters", "state_dict"} <= set(self.raw) or not found:
            raise UserError(
                f"{self.path}: no fitted preprocessing in this checkpoint (not a movrec run?)"
            )
        self.datamodule_class = DATAMODULES[found[0]]
        self.state: dict = self.raw[found[0]]
        self.epoch = int(self.raw["epoch"]) + 1  # 1-based

    @property
    def preprocessing(self) -> Preprocessing:
        return Preprocessing.from_state(self.state["preprocessing"])

    def model(self) -> RatingRegressor:
        model = RatingRegressor(**self.raw["hyper_parameters"])
        model.load_state_dict(self.raw["state_dict"])
        return model.eval()

    def datamodule(self, **overrides: Any) -> FittedDataModule:
        """The training data rebuilt from the saved settings (``overrides`` replace some, e.g.
        a folder that moved), transformed by the checkpoint's fitted preprocessing."""
        settings = dict(self.raw.get("datamodule_hyper_parameters", {}))
        settings.update({k: v for k, v in overrides.items() if v is not None})
        datamodule = self.datamodule_class(**settings)
        datamodule.load_state_dict(self.state)
        datamodule.setup("predict")
        return datamodule


def latest_checkpoint(log_dir: str | Path) -> Path:
    """The tested checkpoint of the newest finished run under ``log_dir``: the one its
    ``metrics.json`` names, so a stray ``.ckpt`` under the logs is never picked. The choice
    is printed on stderr."""
    runs = []
    for metrics in Path(log_dir).rglob("metrics.json"):
        try:
            named = json.loads(metrics.read_text()).get("checkpoint")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(named, str) and named.endswith(".ckpt"):
            path = Path(named)
            if not path.is_file():  # the logs moved: the same file inside this run's folder
                path = next(metrics.parent.rglob(path.name), path)
            if path.is_file():
                runs.append((metrics.stat().st_mtime, path))
    if not runs:
        raise MissingFileError(
            f"no finished run with a checkpoint under {Path(log_dir).resolve()}: train one "
            "first (python train.py experiment=recommend) or pass --ckpt PATH"
        )
    chosen = max(runs)[1]
    print(f"movrec: checkpoint {chosen} (the newest finished run)", file=sys.stderr)
    return chosen
