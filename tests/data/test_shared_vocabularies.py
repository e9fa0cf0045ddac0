"""``features[].vocabulary_of``: a sequence feature that shares the vocabulary of the item id, so the same
id has the same position in both vocabularies."""
import pandas as pd
import pytest

from grec_tf.config import parse_config
from grec_tf.data.feature_statistics import compute_feature_statistics, shared_vocabulary_owners
from grec_tf.errors import ConfigError


def config(features):
    return parse_config({"data": {"source": "parquet", "flows": ["f"], "use_cases": ["like"]},
                         "features": features})


FEATURES = [
    {"name": "recent", "kind": "sequence", "max_length": 3, "vocabulary_of": "movie_id"},
    {"name": "movie_id", "kind": "item_id", "group": "item", "max_vocab": 4},
    {"name": "genre", "kind": "categorical", "group": "item"},
]


def frame():
    # movie_id counts: m1 x3, m2 x1, m3 x1. recent (last 3 kept): m2 x3, m9 x2, m1 x1, m4 x1, m5 x1
    return pd.DataFrame({
        "movie_id": ["m1", "m1", "m2", "m3", "m1"],
        "recent": [["m0", "m2", "m9", "m1"], ["m2"], ["m9", "m2"], [], ["m4", "m5"]],
        "genre": ["drama", "comedy", "drama", "drama", "comedy"],
    })


def test_shared_list_is_identical_and_ranked_by_combined_frequency():
    stats = compute_feature_statistics(frame(), config(FEATURES))
    # combined: m1 4, m2 4, m9 2, then m3 m4 m5 1 each (ties by value); max_vocab of movie_id is 4.
    # m0 was dropped with the ids beyond recent's max_length.
    assert stats.vocabularies["movie_id"] == ["m1", "m2", "m9", "m3"]
    assert stats.vocabularies["recent"] == stats.vocabularies["movie_id"]
    assert "m9" in stats.vocabularies["movie_id"]  # seen only in a sequence
    assert list(stats.vocabularies) == ["recent", "movie_id", "genre"]
    assert stats.vocabularies["genre"] == ["drama", "comedy"]


def test_without_vocabulary_of_each_feature_keeps_its_own_list():
    features = [dict(f) for f in FEATURES]
    features[0].pop("vocabulary_of")
    stats = compute_feature_statistics(frame(), config(features))
    assert stats.vocabularies["movie_id"] == ["m1", "m2", "m3"]
    assert stats.vocabularies["recent"][:2] == ["m2", "m9"]


def test_two_sequences_can_share_one_item_vocabulary():
    features = FEATURES + [{"name": "wished", "kind": "sequence", "vocabulary_of": "movie_id"}]
    data = frame().assign(wished=[["m7", "m7", "m7"], ["m7"], [], [], ["m7"]])
    stats = compute_feature_statistics(data, config(features))
    assert stats.vocabularies["movie_id"][0] == "m7"  # 5 in wished beats m1's 4
    assert stats.vocabularies["wished"] == stats.vocabularies["recent"] == stats.vocabularies["movie_id"]
    assert shared_vocabulary_owners(config(features)) == {"recent": "movie_id", "movie_id": "movie_id",
                                                          "genre": "genre", "wished": "movie_id"}


@pytest.mark.parametrize("change,message", [
    ({"vocabulary_of": "title"}, "features\\[recent\\].vocabulary_of: 'title' is a text feature"),
    ({"vocabulary_of": "recent"}, "features\\[recent\\].vocabulary_of: 'recent' is a sequence feature"),
    ({"vocabulary_of": "nowhere"}, "features\\[recent\\].vocabulary_of: 'nowhere' is not a declared feature"),
])
def test_a_bad_vocabulary_of_names_the_key(change, message):
    features = [dict(FEATURES[0], **change)] + FEATURES[1:] + [{"name": "title", "kind": "text"}]
    with pytest.raises(ConfigError, match=message):
        config(features)


def test_vocabulary_of_on_a_feature_without_a_vocabulary_is_an_error():
    features = FEATURES + [{"name": "price", "kind": "numerical", "vocabulary_of": "movie_id"}]
    with pytest.raises(ConfigError, match="features\\[price\\].vocabulary_of: only a sequence feature"):
        config(features)
