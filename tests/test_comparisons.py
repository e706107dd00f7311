"""Paired bootstrap comparisons on hand-made per-image outcomes."""
import numpy as np
import pytest

from addressclip.comparisons import compare, decode_hits, encode_hits, paired_bootstrap, verdict


def test_hits_round_trip():
    hits = np.array([1, 0, 0, 1, 1], dtype=np.int8)
    assert encode_hits(hits) == "10011" and (decode_hits("10011") == hits).all()


def test_identical_methods_have_a_zero_interval():
    a = np.array([[1, 0, 1, 1], [0, 0, 1, 1]])
    r = paired_bootstrap(a, a)
    assert r["difference"] == r["ci_low"] == r["ci_high"] == 0.0
    assert verdict(r["ci_low"], r["ci_high"]).startswith("no difference shown")


def test_difference_is_in_points_and_pairs_images():
    # B misses exactly the images A gets, on 2 of 10 images: +20 points, and every resample keeps A >= B
    a = np.array([[1] * 2 + [1] * 8])
    b = np.array([[0] * 2 + [1] * 8])
    r = paired_bootstrap(a, b)
    assert r["difference"] == pytest.approx(20.0) and r["ci_low"] >= 0.0
    # unpaired noise of the same size would not be this certain: shuffle B's outcomes per image
    many_a = (np.random.default_rng(0).random((3, 500)) < 0.5).astype(int)
    r = paired_bootstrap(many_a, many_a[:, ::-1])
    assert r["ci_low"] < 0 < r["ci_high"]


def test_deterministic_method_pairs_with_every_seed():
    a = np.array([[1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]])
    b = np.array([[1, 0, 0, 0]])  # ran once
    r = paired_bootstrap(a, b)
    assert r["seeds"] == 3 and r["difference"] == pytest.approx(100 * (a.mean() - b.mean()))
    with pytest.raises(ValueError, match="different test sets"):
        paired_bootstrap(a, np.array([[1, 0]]))
    with pytest.raises(ValueError, match="seeds do not pair"):
        paired_bootstrap(a, a[:2])


def test_clear_gain_is_better_and_missing_results_cannot_be_judged():
    rng = np.random.default_rng(1)
    a, b = (rng.random((3, 1000)) < 0.6).astype(int), (rng.random((3, 1000)) < 0.4).astype(int)
    assert compare("A", a, "B", b)["verdict"].startswith("better")
    assert compare("B", b, "A", a)["verdict"].startswith("worse")
    assert compare("A", None, "B", b)["verdict"].startswith("cannot be judged")
