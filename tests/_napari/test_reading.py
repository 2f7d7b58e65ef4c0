"""Warnings raised while the reader or a sample loads: the plugin's become notifications."""

from __future__ import annotations

import warnings

import pytest

from napari_kernelspec._napari.reading import warnings_as_notifications
from napari_kernelspec.sources.loading import UntrainedWeightsWarning


@pytest.fixture
def shown():
    from napari.utils.notifications import notification_manager

    out = []
    notification_manager.notification_ready.connect(out.append)
    yield out
    notification_manager.notification_ready.disconnect(out.append)


def test_the_plugins_warnings_are_notified_every_time_others_are_not(shown):
    for _ in range(2):  # a second open tells the user again
        with pytest.warns(UntrainedWeightsWarning), warnings_as_notifications():
            warnings.warn(UntrainedWeightsWarning("AlexNet", "offline"), stacklevel=1)
    assert [n.message for n in shown] == [str(UntrainedWeightsWarning("AlexNet", "offline"))] * 2
    with pytest.warns(UserWarning, match="from a library"), warnings_as_notifications():
        warnings.warn_explicit("from a library", UserWarning, "/elsewhere/lib.py", 1)
    assert len(shown) == 2  # passed on, not notified
