"""bench/bench_render.py at small scale: whole places (the builder's 4 headings), single views, a bad count."""
from __future__ import annotations

import pytest
from bench_scripts import load

pytest.importorskip("pyrosm")
bench = load("bench_render")


@pytest.mark.parametrize("headings", [4, 1])
def test_renders_whole_places_or_single_views(headings, capsys):
    out = bench.main(["--city", "kotka", "--n", "6", "--size", "32", "--headings", str(headings)])
    assert out["images"] == 6 and out["images_per_s"] > 0
    assert f"rendered 6 views ({headings} a place) at 32 px" in capsys.readouterr().out


def test_refuses_fewer_than_one_heading(capsys):
    with pytest.raises(SystemExit):
        bench.main(["--headings", "0"])
    assert "--headings must be at least 1, got 0" in capsys.readouterr().err
