"""Cluster colours: as many distinct colours as clusters (the seed repeated after 10)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_kernelspec.analysis.palette import cluster_colors, to_hex


@pytest.mark.parametrize("k", [0, 1, 10, 11, 64, 200])
def test_every_cluster_gets_its_own_colour(k):
    colours = cluster_colors(k)
    assert colours.shape == (k, 3) and ((colours >= 0) & (colours <= 1)).all()
    assert len({to_hex(c) for c in colours}) == k


def test_neighbouring_clusters_differ_clearly():
    colours = cluster_colors(30)
    assert np.linalg.norm(np.diff(colours, axis=0), axis=1).min() > 0.2


def test_hex():
    assert to_hex((1.0, 0.5, 0.0)) == "#ff8000"
