import numpy as np
import pytest

from nowcast.units import RainNormaliser, canonical_units, dbz_to_rainrate, rainrate_to_dbz
from nowcast.errors import NowcastError


def test_marshall_palmer_reference_values():
    # Z = 200 R^1.6: 1 mm/h is 23.01 dBZ, 10 mm/h is 39.01 dBZ.
    np.testing.assert_allclose(rainrate_to_dbz(np.array([1.0, 10.0])), [23.0103, 39.0103], atol=1e-3)


@pytest.mark.parametrize("a, b", [(200.0, 1.6), (300.0, 1.4), (316.0, 1.5)])
def test_dbz_rainrate_round_trip(a, b):
    rate = np.array([0.01, 0.1, 1.0, 5.0, 50.0, 200.0], dtype=np.float32)
    back = dbz_to_rainrate(rainrate_to_dbz(rate, a, b), a, b)
    np.testing.assert_allclose(back, rate, rtol=1e-5)


def test_nan_stays_nan():
    assert np.isnan(dbz_to_rainrate(np.array([np.nan])))[0]


@pytest.mark.parametrize("kind", ["log", "linear"])
def test_normaliser_round_trip(kind):
    norm = RainNormaliser(kind=kind)
    rate = np.array([0.0, 0.05, 0.5, 3.0, 30.0, 150.0], dtype=np.float32)
    np.testing.assert_allclose(norm.inverse(norm.forward(rate)), rate, rtol=1e-5, atol=1e-6)
    assert norm.forward(np.array([0.0]))[0] == 0.0


def test_units_aliases_and_unknown():
    assert canonical_units("mm/h") == "mm h-1"
    assert canonical_units("DBZ") == "dBZ"
    with pytest.raises(NowcastError, match="furlongs"):
        canonical_units("furlongs")
