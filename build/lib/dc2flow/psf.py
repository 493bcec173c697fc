"""The point-spread function: atmosphere (Kolmogorov) convolved with optics and sensor (Gaussian).

The atmospheric FWHM is the catalog's ``seeing`` (FWHM at 500 nm at zenith, arcsec) scaled by
``airmass**0.6`` and by ``(lambda_eff / 500 nm)**-0.2`` at the band's effective wavelength; it is
convolved with a Gaussian of ``optics_fwhm_arcsec`` (0.3 arcsec, imSim's default) for the optics
and the sensor.  The PSF is achromatic within a band and constant over the focal plane.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PsfModel:
    """Parameters:
        atm_fwhm_arcsec:    Kolmogorov FWHM in this band at this airmass.
        optics_fwhm_arcsec: FWHM of the Gaussian for optics and sensor.
    """

    atm_fwhm_arcsec: float
    optics_fwhm_arcsec: float

    @classmethod
    def for_visit(cls, seeing_arcsec: float, airmass: float, wavelength_nm: float,
                  optics_fwhm_arcsec: float) -> "PsfModel":
        atm = seeing_arcsec * airmass**0.6 * (wavelength_nm / 500.0) ** -0.2
        return cls(atm_fwhm_arcsec=float(atm), optics_fwhm_arcsec=float(optics_fwhm_arcsec))

    @property
    def fwhm_arcsec(self) -> float:
        """Approximate FWHM of the convolution (quadrature sum)."""
        return math.hypot(self.atm_fwhm_arcsec, self.optics_fwhm_arcsec)

    def galsim(self, gsparams=None):
        """The PSF as a GalSim profile."""
        import galsim

        return galsim.Convolve(galsim.Kolmogorov(fwhm=self.atm_fwhm_arcsec, gsparams=gsparams),
                               galsim.Gaussian(fwhm=self.optics_fwhm_arcsec, gsparams=gsparams))


@functools.lru_cache(maxsize=64)
def _profile(fwhm_arcsec: float, pixel_scale_arcsec: float) -> tuple[np.ndarray, np.ndarray]:
    """(radius px, log surface brightness per pixel for unit flux) of a Kolmogorov profile."""
    import galsim

    kol = galsim.Kolmogorov(fwhm=fwhm_arcsec)
    r_px = np.geomspace(0.5, 4096.0, 400)
    sb = np.array([kol.xValue(galsim.PositionD(r * pixel_scale_arcsec, 0.0)) for r in r_px])
    return r_px, np.log(np.maximum(sb * pixel_scale_arcsec**2, 1e-300))


def psf_radius_px(model: PsfModel, flux: np.ndarray, threshold: float, pixel_scale_arcsec: float) -> np.ndarray:
    """Radius (px) at which ``flux`` spread by the PSF falls below ``threshold`` per pixel.

    The profile is a Kolmogorov with the model's total FWHM, whose power-law wings dominate the
    stamp size of bright objects.
    """
    r_px, log_sb = _profile(round(model.fwhm_arcsec, 4), pixel_scale_arcsec)
    flux = np.maximum(np.asarray(flux, dtype=float), 1e-30)
    need = np.log(threshold / flux)          # log sb at which flux * sb == threshold
    # log_sb decreases with radius: interpolate radius as a function of log_sb
    return np.interp(need, log_sb[::-1], r_px[::-1], left=r_px[-1], right=0.0)


def enclosed_radius_px(model: PsfModel, fraction: float, pixel_scale_arcsec: float) -> float:
    """Radius (px) enclosing ``fraction`` of a point source's light (Kolmogorov, total FWHM)."""
    r_px, log_sb = _profile(round(model.fwhm_arcsec, 4), pixel_scale_arcsec)
    r = np.concatenate([[0.0], r_px])
    sb = np.exp(np.concatenate([[log_sb[0]], log_sb]))
    ring = 0.5 * (sb[1:] * r[1:] + sb[:-1] * r[:-1]) * np.diff(r) * 2 * np.pi
    enclosed = np.concatenate([[0.0], np.cumsum(ring)])
    return float(np.interp(fraction * enclosed[-1], enclosed, r))
