"""Featurizers: shape, normalisation, stability, action text, the optional MiniLM extra."""

from __future__ import annotations

import numpy as np
import pytest
from learning_helpers import needs_minilm

from agent_lightning.learning import (
    Action,
    FeaturizerUnavailable,
    HashingFeaturizer,
    LearningError,
    MiniLMFeaturizer,
    SpecError,
    StaticEmbeddingFeaturizer,
    UnionFeaturizer,
    action_text,
    make_featurizer,
)
from agent_lightning.learning import featurizers as fz


def test_hashing_rows_are_float32_unit_norm_and_sparse():
    f = HashingFeaturizer()
    X = f.transform(["My card hasn't arrived yet", "", "exchange rate"])
    assert X.shape == (3, f.dim) and X.dtype == np.float32
    norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=1)).ravel())
    np.testing.assert_allclose(norms, [1.0, 0.0, 1.0], atol=1e-6)
    assert X[0].nnz < 200


def test_hashing_is_stable_across_processes():
    # crc32, not Python's salted hash(): the column of a feature is a constant.
    assert fz._bucket("w:card", 2**16) == (31538, -1.0)


def test_stemming_and_char_ngrams_make_names_meet_queries():
    f = HashingFeaturizer()
    q, good, bad = f.transform(["my card hasn't arrived", "card arrival", "exchange rate"])
    assert (q @ good.T).toarray()[0, 0] > (q @ bad.T).toarray()[0, 0] + 0.2
    assert fz._stem("arrived") == fz._stem("arrival") == "arriv"


def test_action_text():
    assert action_text(Action("card_arrival")) == "card arrival"
    assert action_text(Action("Refund_not_showing_up")) == "refund not showing up"
    assert action_text(Action("reverted_card_payment?")) == "reverted card payment"
    assert action_text(Action("getVirtualCard", "a card for online use")) == (
        "get virtual card. a card for online use"
    )


def test_config_round_trip_and_validation():
    f = HashingFeaturizer(n_features=2**10, char_ngrams=(2, 4), char_weight=0.5)
    g = make_featurizer(f.to_config())
    assert g.to_config() == f.to_config()
    np.testing.assert_array_equal(
        f.transform(["abc def"]).toarray(), g.transform(["abc def"]).toarray()
    )
    with pytest.raises(SpecError):
        HashingFeaturizer(n_features=1000)
    with pytest.raises(SpecError, match="featurizer.kind"):
        make_featurizer("word2vec")
    with pytest.raises(SpecError):
        f.transform("one string")


def test_minilm_missing_extra_tells_how_to_install(monkeypatch):
    monkeypatch.setattr(fz, "minilm_available", lambda: False)
    with pytest.raises(FeaturizerUnavailable, match=r"pip install 'agent-lightning\[embeddings\]'"):
        MiniLMFeaturizer()
    assert issubclass(FeaturizerUnavailable, LearningError)


@needs_minilm
def test_minilm_embeds_and_caches_on_disk(tmp_path):
    f = MiniLMFeaturizer(cache_dir=str(tmp_path))
    X = f.transform(["my card has not arrived", "card arrival", "exchange rate"])
    assert X.shape == (3, 384) and X.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-5)
    assert X[0] @ X[1] > X[0] @ X[2]
    assert len(list(tmp_path.rglob("*.f32"))) == 3
    # A fresh featurizer reads the cache and never needs the model.
    g = MiniLMFeaturizer(cache_dir=str(tmp_path))
    np.testing.assert_array_equal(g.transform(["card arrival"])[0], X[1])
    assert g._model is None


def test_minilm_hybrid_preset_without_the_extra_says_what_to_do(monkeypatch):
    monkeypatch.setattr(fz, "minilm_available", lambda: False)
    with pytest.raises(FeaturizerUnavailable, match=r"agent-lightning\[embeddings\]"):
        make_featurizer("minilm_hybrid")


@needs_minilm
def test_minilm_hybrid_preset_is_minilm_beside_static_vectors(tmp_path, monkeypatch):
    monkeypatch.setenv("AGL_CACHE_DIR", str(tmp_path))
    f = make_featurizer("minilm_hybrid")
    config = f.to_config()
    assert [p["kind"] for p in config["parts"]] == ["minilm", "static"]
    assert config["weights"] == pytest.approx([0.7, 0.3]) and not f.sparse
    X = f.transform(["my card has not arrived", "card arrival", "exchange rate"])
    assert X.shape == (3, 384 + f.parts[1].dim)
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-5)
    assert X[0] @ X[1] > X[0] @ X[2]


@needs_minilm
def test_minilm_cache_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("AGL_CACHE_DIR", str(tmp_path))
    MiniLMFeaturizer().transform(["hello there"])
    assert list(tmp_path.rglob("*.f32"))


def test_stopwords_option_and_row_memo():
    plain, lean = HashingFeaturizer(), HashingFeaturizer(stopwords=True)
    assert "w:my" in plain._counts("my card") and "w:my" not in lean._counts("my card")
    assert "w:not" in lean._counts("it has not arrived")  # negations are kept
    X1 = plain.transform(["my card hasn't arrived"])
    X2 = plain.transform(["my card hasn't arrived"])  # memoised row, same values
    np.testing.assert_array_equal(X1.toarray(), X2.toarray())
    assert (X1 != lean.transform(["my card hasn't arrived"])).nnz > 0


def test_old_policy_files_keep_their_features():
    from agent_lightning.learning.policy import _upgrade_featurizer_config

    old = {"kind": "hashing", "n_features": 1024, "word_ngrams": 2, "char_ngrams": [3, 5],
           "char_weight": 1.0, "stem": True}  # fmt: skip
    upgraded = make_featurizer(_upgrade_featurizer_config(old))
    assert upgraded.stopwords is False and upgraded.word_weight == 1.0


# -- static word vectors and the union (the default "hybrid") ------------------------------------


def _cos(X, i: int, j: int) -> float:
    X = X.toarray() if hasattr(X, "toarray") else X
    return float(X[i] @ X[j])


def test_static_rows_are_unit_norm_and_paraphrases_meet():
    f = StaticEmbeddingFeaturizer()
    X = f.transform(
        ["my card still hasn't come", "when will my new card arrive", "", "exchange rate"]
    )
    assert isinstance(X, np.ndarray) and X.shape == (4, 256) and X.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), [1.0, 1.0, 0.0, 1.0], atol=1e-5)
    # Same intent, almost no shared word: dense vectors see it, hashed n-grams barely do.
    H = HashingFeaturizer().transform(["my card still hasn't come", "when will my new card arrive"])
    assert _cos(X, 0, 1) > _cos(X, 0, 3) + 0.2
    assert _cos(X, 0, 1) > _cos(H, 0, 1) + 0.2


def test_static_prefix_dims_long_text_and_validation():
    short = StaticEmbeddingFeaturizer(dims=64).transform(["top up failed"])
    full = StaticEmbeddingFeaturizer().transform(["top up failed"])
    prefix = full[0, :64] / np.linalg.norm(full[0, :64])
    np.testing.assert_allclose(short[0], prefix, atol=1e-5)
    # A pasted log is cut at a fixed number of tokens: bounded work, same row as its head.
    long = StaticEmbeddingFeaturizer().transform(["refund " * 50_000])
    assert np.isfinite(long).all() and np.linalg.norm(long) == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(SpecError, match="dims"):
        StaticEmbeddingFeaturizer(dims=100)
    assert make_featurizer({"kind": "static", "dims": 128}).dim == 128


def test_static_without_the_package_says_what_to_do(monkeypatch):
    fz._wordllama_table.cache_clear()
    monkeypatch.setattr(fz, "_wordllama_root", lambda: None)  # as if not installed
    try:
        with pytest.raises(FeaturizerUnavailable, match="wordllama"):
            # A text no earlier test featurized: rows are memoised per process.
            StaticEmbeddingFeaturizer().transform(["a text only this test uses 7f3a"])
    finally:
        monkeypatch.undo()
        fz._wordllama_table.cache_clear()
    assert StaticEmbeddingFeaturizer().transform(["hello"]).shape == (1, 256)


def test_static_leaves_the_host_logging_alone():
    import logging
    import subprocess
    import sys

    # wordllama's __init__ calls logging.basicConfig(level=INFO); we never import it.
    code = (
        "import logging, sys\n"
        "from agent_lightning.learning import StaticEmbeddingFeaturizer\n"
        "StaticEmbeddingFeaturizer().transform(['hello there'])\n"
        "root = logging.getLogger()\n"
        "print('wordllama' in sys.modules, root.level, len(root.handlers))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", str(logging.WARNING), "0"]


def test_union_cosine_is_the_weighted_mean_of_the_parts():
    texts = ["my card still hasn't come", "card arrival", "exchange rate", ""]
    h, s = HashingFeaturizer(n_features=2**12), StaticEmbeddingFeaturizer(dims=64)
    u = UnionFeaturizer([h, s], weights=[3, 1])
    assert u.weights == [0.75, 0.25] and u.sparse and u.dim == 2**12 + 64
    U, H, S = u.transform(texts), h.transform(texts), s.transform(texts)
    for i, j in [(0, 1), (0, 2), (1, 2)]:
        assert _cos(U, i, j) == pytest.approx(0.75 * _cos(H, i, j) + 0.25 * _cos(S, i, j), abs=1e-5)
    norms = np.sqrt(np.asarray(U.multiply(U).sum(axis=1)).ravel())
    np.testing.assert_allclose(norms, [1, 1, 1, 0], atol=1e-5)
    # One row at a time (a decision) gives exactly the batch's rows (learning, evaluation).
    for i, t in enumerate(texts):
        np.testing.assert_array_equal(u.transform([t]).toarray()[0], U.toarray()[i])
    dense = UnionFeaturizer([{"kind": "static", "dims": 64}, {"kind": "static", "dims": 128}])
    assert isinstance(dense.transform(texts), np.ndarray) and not dense.sparse


def test_union_config_round_trip_presets_and_validation():
    hybrid = make_featurizer("hybrid")
    config = hybrid.to_config()
    # A preset is saved expanded: changing the preset later never changes a saved policy.
    assert config["kind"] == "union" and [p["kind"] for p in config["parts"]] == [
        "hashing",
        "static",
    ]
    again = make_featurizer(config)
    assert again.to_config() == config
    np.testing.assert_array_equal(
        hybrid.transform(["lost my card"]).toarray(), again.transform(["lost my card"]).toarray()
    )
    for bad in ([], "hashing", [{"kind": "nope"}]):
        with pytest.raises(SpecError):
            UnionFeaturizer(bad)
    with pytest.raises(SpecError, match="weights"):
        UnionFeaturizer(["hashing", "static"], weights=[1])
    with pytest.raises(SpecError, match="weights"):
        UnionFeaturizer(["hashing", "static"], weights=[0, 0])
    with pytest.raises(SpecError, match="known: .*hybrid"):
        make_featurizer("word2vec")


def test_static_batch_larger_than_the_memo_keeps_every_row(monkeypatch):
    # A batch that evicts its own first rows from the shared memo must still return them all.
    texts = [f"memo eviction probe {word} number {i}" for i, word in enumerate("abcdefghij")]
    expected = np.vstack([fz.StaticEmbeddingFeaturizer(dims=64).transform([t]) for t in texts])
    monkeypatch.setattr(fz, "MEMO_ROWS", 2)
    monkeypatch.setattr(fz, "_MEMOS", {})
    got = fz.StaticEmbeddingFeaturizer(dims=64).transform(texts)
    np.testing.assert_array_equal(got, expected)
    assert len(fz._MEMOS[("static", 64)]) <= 3
