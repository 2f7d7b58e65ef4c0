"""Cluster and model colours: as many distinct colours as needed, perceptually apart."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.color import deltaE_ciede2000, rgb2lab

from napari_kernelspec.analysis.palette import UNCLUSTERED_RGB, cluster_colors, to_hex


def _min_difference(colours: np.ndarray) -> float:
    """Smallest CIEDE2000 difference between two of `colours`."""
    lab = rgb2lab(colours[None])[0]
    d = deltaE_ciede2000(lab[:, None], lab[None, :])
    return float((d + np.eye(len(lab)) * 1e9).min())


@pytest.mark.parametrize("k", [0, 1, 10, 11, 64, 200])
def test_every_cluster_gets_its_own_colour(k):
    colours = cluster_colors(k)
    assert colours.shape == (k, 3) and ((colours >= 0) & (colours <= 1)).all()
    assert len({to_hex(c) for c in colours}) == k


@pytest.mark.parametrize(("k", "least"), [(8, 25.0), (21, 18.0), (30, 15.0)])
def test_colours_are_perceptually_apart(k, least):
    # 8: the models of the seed report; 21 and 30: many clusters. A difference of about 2 is
    # just noticeable; the golden-ratio hue wheel used before reached 4.8 among 8, 2.9 among 30.
    assert _min_difference(cluster_colors(k)) >= least


def test_colours_stay_clear_of_white_grey_and_black():
    colours = cluster_colors(30)
    for other in [(1.0, 1.0, 1.0), UNCLUSTERED_RGB, (0.0, 0.0, 0.0)]:
        both = np.vstack([colours, other])
        lab = rgb2lab(both[None])[0]
        assert deltaE_ciede2000(lab[:-1], np.broadcast_to(lab[-1], lab[:-1].shape)).min() > 15


def test_a_colour_does_not_change_when_more_clusters_appear():
    assert np.array_equal(cluster_colors(40)[:7], cluster_colors(7))
    assert np.array_equal(cluster_colors(300)[:40], cluster_colors(40))


def test_bad_k_is_refused():
    with pytest.raises(ValueError):
        cluster_colors(-1)
    with pytest.raises(ValueError):
        cluster_colors(2.5)


def test_hex():
    assert to_hex((1.0, 0.5, 0.0)) == "#ff8000"


def test_the_stored_first_colours_are_the_computed_sequence():
    from napari_kernelspec.analysis import palette

    palette._greedy.cache_clear()
    assert np.array_equal(cluster_colors(64), palette._greedy(64))
    assert np.array_equal(cluster_colors(65)[:64], cluster_colors(64))
