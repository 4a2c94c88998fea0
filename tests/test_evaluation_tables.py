"""Tests for jaxrestore.evaluation.tables: the statistics of a table cell."""

import numpy as np
import pytest

from jaxrestore.evaluation import tables


def test_mean_interval():
    x = [1.0, 2.0, 4.0, 7.0]  # t_{0.975, 3} = 3.182 (the t table)
    cell = tables.mean_interval(x)
    assert cell["mean"] == 3.5 and cell["n"] == 4
    assert cell["ci95"] == pytest.approx(3.182 * np.std(x, ddof=1) / 2, rel=1e-3)
    assert tables.mean_interval([2.0]) == {"mean": 2.0, "ci95": None, "n": 1}
    assert tables.mean_interval([np.nan, 2.0, np.inf]) == {
        "mean": 2.0,
        "ci95": None,
        "n": 1,
        "non_finite": 2,
    }
