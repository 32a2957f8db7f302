"""Tokenizer and vocabularies."""

from __future__ import annotations

import numpy as np

from movrec.data.vocab import (
    OOV_INDEX,
    PAD_INDEX,
    IdVocabulary,
    TagVocabulary,
    TokenVocabulary,
    tokenize,
)


def test_tokenize_lowercases_and_strips_punctuation():
    assert tokenize("Spider-Man 2: Far From Home!") == ["spider", "man", "2", "far", "from", "home"]
    assert tokenize("Amélie") == ["amélie"]
    assert tokenize("") == []


def test_vocabulary_keeps_most_frequent_words_with_stable_ties():
    vocab = TokenVocabulary.fit(["b a", "a c", "a b", "d"], num_words=2)
    assert vocab.words == ["a", "b"]  # a:3, b:2; c and d dropped
    assert len(vocab) == 4  # + padding and OOV


def test_encode_pads_truncates_and_marks_oov():
    vocab = TokenVocabulary(["love", "war"])
    out = vocab.encode(["War and Love", "love " * 20], length=4)
    assert out.dtype == np.int64 and out.shape == (2, 4)
    assert out[0].tolist() == [3, OOV_INDEX, 2, PAD_INDEX]
    assert out[1].tolist() == [2, 2, 2, 2]


def test_vocabulary_state_round_trip():
    vocab = TokenVocabulary.fit(["x y z", "y"], num_words=10)
    again = TokenVocabulary.from_state(vocab.state_dict())
    assert again.words == vocab.words
    assert (again.encode(["z y q"], 3) == vocab.encode(["z y q"], 3)).all()


def test_unseen_ids_map_to_the_unknown_index():
    ids = IdVocabulary.fit([30, 10, 20, 10])
    assert len(ids) == 4
    assert ids.encode([10, 20, 30, 99]).tolist() == [1, 2, 3, 0]
    assert IdVocabulary.from_state(ids.state_dict()).encode([99, 30]).tolist() == [0, 3]


def test_tags_of_one_movie_are_left_out_and_unseen_tags_dropped():
    movies = [["cast:A", "cast:B", "cast:A"], ["cast:A", "company:C"], ["company:C", "cast:B"]]
    vocabulary = TagVocabulary.fit(movies + [["keyword:once"]], size=10)
    assert vocabulary.tags == ["cast:A", "cast:B", "company:C"]  # counted once per movie
    assert TagVocabulary.fit(movies, size=1).tags == ["cast:A"]
    encoded = vocabulary.encode([["keyword:new", "company:C", "cast:A"], []], length=3)
    np.testing.assert_array_equal(encoded, [[3, 1, PAD_INDEX], [PAD_INDEX] * 3])
    assert TagVocabulary.from_state(vocabulary.state_dict()).tags == vocabulary.tags
