"""Pictures of images: binning, display stretches and PNG encoding, for mosaics and the viewer.

One place turns float pixels into 8-bit grey levels, so a focal-plane mosaic, a sensor cut-out and
the eyeball viewer show the same thing for the same stretch.  The stretches are astropy's:

- ``zscale``: IRAF's zscale limits (:class:`astropy.visualization.ZScaleInterval`), linear between them;
- ``linear``: the 0.5 and 99.5 percentiles, linear between them;
- ``asinh``: the zscale lower limit to the 99.9 percentile, then an asinh stretch, which shows the
  sky noise and the cores of bright stars in one picture.

Non-finite pixels (masked, off-sensor) are drawn black.
"""

from __future__ import annotations

import io
import os

import numpy as np

from .errors import ConfigError, RenderError

STRETCHES = ("zscale", "linear", "asinh")
ZSCALE_SAMPLES = 20000           # pixels zscale looks at (evenly spaced): fast, and the same every time


def bin_image(pixels: np.ndarray, factor: int) -> np.ndarray:
    """Mean of ``factor`` × ``factor`` blocks (edge rows and columns that do not fill a block are dropped).

    Parameters:
        pixels: a 2-d array.
        factor: the binning factor, ≥ 1.

    Returns:
        a float32 array of shape ``(ny // factor, nx // factor)``.
    """
    if factor < 1:
        raise ConfigError("bin", factor, "a binning factor must be an integer ≥ 1", ">= 1")
    ny, nx = (s // factor * factor for s in pixels.shape)
    view = np.asarray(pixels[:ny, :nx], dtype=np.float32)
    return view.reshape(ny // factor, factor, nx // factor, factor).mean(axis=(1, 3), dtype=np.float64).astype(np.float32)


def stretch_limits(pixels: np.ndarray, stretch: str) -> tuple[float, float]:
    """The pixel values shown as black and white by ``stretch`` (see the module docstring)."""
    from astropy.visualization import ZScaleInterval

    if stretch not in STRETCHES:
        raise ConfigError("stretch", stretch, "unknown stretch", list(STRETCHES))
    finite = pixels[np.isfinite(pixels)]
    if finite.size == 0:
        return 0.0, 1.0
    if stretch == "linear":
        lo, hi = np.percentile(finite, [0.5, 99.5])
    else:
        sample = finite[:: max(1, finite.size // ZSCALE_SAMPLES)]
        lo, hi = ZScaleInterval(n_samples=sample.size).get_limits(sample)
        if stretch == "asinh":
            hi = max(float(np.percentile(finite, 99.9)), hi)
    if not hi > lo:
        hi = lo + 1.0
    return float(lo), float(hi)


def to_grey(pixels: np.ndarray, stretch: str = "zscale",
            limits: tuple[float, float] | None = None) -> np.ndarray:
    """8-bit grey levels of ``pixels`` under ``stretch`` (row 0 at the top, as a PNG stores it).

    Parameters:
        pixels:  a 2-d array, row 0 = the image's first (bottom, FITS) row.
        stretch: ``zscale``, ``linear`` or ``asinh``.  [default: zscale]
        limits:  black and white pixel values, e.g. shared by all sensors of a mosaic;
                 None: :func:`stretch_limits` of these pixels.

    Returns:
        a uint8 array flipped top-to-bottom, so north-up FITS images look as in DS9.
    """
    from astropy.visualization import AsinhStretch

    lo, hi = limits if limits is not None else stretch_limits(pixels, stretch)
    if stretch not in STRETCHES:
        raise ConfigError("stretch", stretch, "unknown stretch", list(STRETCHES))
    scaled = np.clip((np.asarray(pixels, dtype=np.float64) - lo) / (hi - lo), 0.0, 1.0)
    if stretch == "asinh":
        scaled = AsinhStretch(a=0.02)(scaled, clip=True)
    grey = np.where(np.isfinite(scaled), np.round(scaled * 255.0), 0.0).astype(np.uint8)
    return grey[::-1]


def encode_png(grey: np.ndarray) -> bytes:
    """PNG bytes of an 8-bit grey (2-d) or RGB (3-d, uint8) array, with no time stamp (reproducible)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(grey)).save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def read_image(path: str | os.PathLike):
    """(float32 pixels in native byte order, header) of a FITS image's primary HDU; RenderError if it
    cannot be read or is not 2-d."""
    from astropy.io import fits

    try:
        with fits.open(path) as hdul:
            header = hdul[0].header.copy()
            pixels = np.array(hdul[0].data, dtype=np.float32)   # native byte order, C order: sep needs it
    except (OSError, TypeError, ValueError) as exc:
        raise RenderError(str(path), f"cannot read the image ({exc})", "rerun the render_sensor job") from None
    if pixels.ndim != 2:
        raise RenderError(str(path), f"not a 2-d image (shape {pixels.shape})", "rerun the render_sensor job")
    return pixels, header
