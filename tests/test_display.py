"""Binning, stretches and PNG encoding shared by mosaics and the viewer."""

import io

import numpy as np
import pytest
from PIL import Image

from dc2flow.display import STRETCHES, bin_image, encode_png, stretch_limits, to_grey
from dc2flow.errors import ConfigError


def test_bin_image_means_blocks_and_drops_ragged_edges():
    pixels = np.arange(7 * 9, dtype=np.float32).reshape(7, 9)
    binned = bin_image(pixels, 3)
    assert binned.shape == (2, 3)
    assert binned[0, 0] == pytest.approx(pixels[:3, :3].mean())
    assert binned[1, 2] == pytest.approx(pixels[3:6, 6:9].mean())
    with pytest.raises(ConfigError, match="bin"):
        bin_image(pixels, 0)


@pytest.mark.parametrize("stretch", STRETCHES)
def test_stretch_maps_sky_to_grey_and_star_to_white(stretch):
    rng = np.random.default_rng(1)
    pixels = rng.normal(1000.0, 30.0, size=(200, 300)).astype(np.float32)
    pixels[100, 150] = 1e6
    grey = to_grey(pixels, stretch)
    assert grey.dtype == np.uint8 and grey.shape == pixels.shape
    assert grey[200 - 1 - 100, 150] == 255                 # flipped: FITS row 0 at the bottom
    assert 20 < np.median(grey) < 235                      # the sky is neither black nor white
    lo, hi = stretch_limits(pixels, stretch)
    assert lo < 1000.0 < hi


def test_non_finite_pixels_are_black_and_bad_stretch_is_named():
    pixels = np.ones((4, 4), dtype=np.float32)
    pixels[0, 0] = np.nan
    assert to_grey(pixels, "linear")[3, 0] == 0
    with pytest.raises(ConfigError, match="unknown stretch.*'log'"):
        to_grey(pixels, "log")


def test_png_round_trips_and_is_reproducible():
    grey = (np.arange(64 * 32) % 256).astype(np.uint8).reshape(32, 64)
    data = encode_png(grey)
    assert data == encode_png(grey)
    back = np.asarray(Image.open(io.BytesIO(data)))
    assert back.shape == (32, 64) and (back == grey).all()
