"""The point-spread function: atmosphere (Kolmogorov) convolved with optics and sensor (Gaussian),
sized so that its FWHM is OpSim's ``FWHMgeom`` for the visit.

imSim's formulae (``imsim/opsim_data.py`` and ``imsim/psf_utils.py``, after LSST Document-20160):

- airmass ``X`` from the altitude by Krisciunas & Schaefer (1991) eq. 3 (:func:`airmass_ks`);
- atmosphere: a Kolmogorov of FWHM ``raw_seeing * (lambda_eff / 500 nm)**-0.3 * X**0.6``, with
  ``raw_seeing`` the FWHM at 500 nm at zenith (the catalog's ``seeing``, OpSim's ``seeingFwhm500``)
  and ``lambda_eff`` LSE-40's (u 365.49 ... y 991.66 nm, :data:`LSE40_WAVELENGTH_NM`);
- ``FWHMeff = 1.16 sqrt(FWHMsys**2 + 1.04 FWHMatm**2)`` with ``FWHMsys = 0.4 X**0.6``, and
  ``FWHMgeom = 0.822 FWHMeff + 0.052`` (:func:`fwhm_geom`), unless OpSim gives ``seeingFwhmGeom``.

The optics term: a Gaussian whose FWHM is *solved* so that the true FWHM (half-maximum width, not
a quadrature sum) of Kolmogorov x Gaussian equals the visit's FWHMgeom (:func:`optics_fwhm_for`;
e.g. 0.75" raw seeing in r at altitude 56.4 deg: atmosphere 0.78", FWHMgeom 0.92", optics
0.45").  imSim's own Kolmogorov + Gaussian PSF fixes the Gaussian at
``sqrt(0.25^2 + 0.3^2 + 0.08^2) X**0.6`` (0.50" at zenith), about 1 % narrower than FWHMgeom;
dc2flow's PSF before this (a ``-0.2`` wavelength exponent and a 0.3" Gaussian) was 7-15 % narrower
(the DC2 lesson: PSFs too small broke DM's PSF models).  A fixed optics FWHM (``scene.optics_fwhm_arcsec``, a number) is still
accepted; null (the default) means "match FWHMgeom".  The PSF is achromatic within a band and
constant over the focal plane.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

#: LSE-40 Table 2 effective wavelengths (nm), as imSim's FWHM formulae use them (y = y2)
LSE40_WAVELENGTH_NM = {"u": 365.49, "g": 480.03, "r": 622.20, "i": 754.06, "z": 868.21, "y": 991.66}


def airmass_ks(altitude_deg: float) -> float:
    """Airmass from altitude, Krisciunas & Schaefer (1991) eq. 3 (imSim's ``getAirmass``)."""
    z = 0.5 * math.pi - math.radians(altitude_deg)
    return 1.0 / math.sqrt(1.0 - 0.96 * math.sin(z) ** 2)


def atmosphere_fwhm(raw_seeing_arcsec: float, band: str, airmass: float) -> float:
    """Kolmogorov FWHM (arcsec) of the atmosphere in ``band`` at ``airmass`` (LSST-20160 eq. 4.1)."""
    return raw_seeing_arcsec * (LSE40_WAVELENGTH_NM[band] / 500.0) ** -0.3 * airmass**0.6


def fwhm_eff(raw_seeing_arcsec: float, band: str, airmass: float) -> float:
    """OpSim's FWHMeff (arcsec): LSST-20160 p. 8 with LSE-30's worst-case system term."""
    return 1.16 * math.sqrt((0.4 * airmass**0.6) ** 2 + 1.04 * atmosphere_fwhm(raw_seeing_arcsec, band, airmass) ** 2)


def fwhm_geom(raw_seeing_arcsec: float, band: str, airmass: float) -> float:
    """OpSim's FWHMgeom (arcsec): ``0.822 FWHMeff + 0.052``."""
    return 0.822 * fwhm_eff(raw_seeing_arcsec, band, airmass) + 0.052


@functools.lru_cache(maxsize=1)
def _width_ratio_table() -> tuple[np.ndarray, np.ndarray]:
    """(t, F(t)): true FWHM of Kolmogorov(FWHM 1) x Gaussian(FWHM t), for t in [0, 4].

    Both profiles scale with their FWHM, so FWHM(a, g) = a F(g / a): one table serves every visit.
    The convolution's radial profile is the Hankel transform of the product of the two Fourier
    profiles (Kolmogorov's ``exp(-(k c)^(5/3))`` with ``c`` from GalSim's own ``kValue``, and the
    Gaussian's), so its half-maximum radius is found without drawing an image (0.17 s for the table);
    :func:`tests.test_psf` checks it against GalSim's ``calculateFWHM`` of drawn profiles.
    """
    import galsim
    from scipy.optimize import brentq
    from scipy.special import j0

    k1 = 2.0
    c = (-math.log(galsim.Kolmogorov(fwhm=1.0).kValue(k1, 0.0).real)) ** 0.6 / k1
    k = np.linspace(0.0, 16.0 / c, 4001)   # exp(-16**(5/3)) ~ 1e-44: nothing beyond; 2e-5 of 20001 to 40/c
    kol = np.exp(-((k * c) ** (5.0 / 3.0)))

    def fwhm(t: float) -> float:
        weight = k * kol * np.exp(-0.5 * (k * t / (2.0 * math.sqrt(2.0 * math.log(2.0)))) ** 2)

        def profile(r: float) -> float:
            return float(np.trapezoid(weight * j0(k * r), k))

        half = 0.5 * profile(0.0)
        return 2.0 * brentq(lambda r: profile(r) - half, 0.05, 5.0 * (1.0 + t), xtol=1e-10)

    t = np.concatenate([[0.0], np.geomspace(0.02, 4.0, 60)])
    return t, np.array([fwhm(float(ti)) for ti in t])


def true_fwhm(atm_fwhm_arcsec: float, optics_fwhm_arcsec: float) -> float:
    """True FWHM (arcsec) of Kolmogorov x Gaussian of these FWHMs."""
    if atm_fwhm_arcsec <= 0:
        return float(optics_fwhm_arcsec)
    t, f = _width_ratio_table()
    return float(atm_fwhm_arcsec * np.interp(optics_fwhm_arcsec / atm_fwhm_arcsec, t, f))


def optics_fwhm_for(atm_fwhm_arcsec: float, target_fwhm_arcsec: float) -> float:
    """The Gaussian FWHM (arcsec) that makes Kolmogorov(atm) x Gaussian as wide as ``target``.

    0 when the atmosphere alone is already as wide (the PSF is then the Kolmogorov).
    """
    t, f = _width_ratio_table()
    ratio = target_fwhm_arcsec / atm_fwhm_arcsec
    if ratio <= f[0]:
        return 0.0
    return float(atm_fwhm_arcsec * np.interp(ratio, f, t))   # F increases with t


@dataclass(frozen=True)
class PsfModel:
    """Parameters:
        atm_fwhm_arcsec:    Kolmogorov FWHM in this band at this airmass.
        optics_fwhm_arcsec: FWHM of the Gaussian for optics and sensor.
    """

    atm_fwhm_arcsec: float
    optics_fwhm_arcsec: float

    @classmethod
    def for_visit(cls, raw_seeing_arcsec: float, band: str, altitude_deg: float,
                  optics_fwhm_arcsec: float | None = None, fwhm_geom_arcsec: float | None = None) -> "PsfModel":
        """The visit's PSF: the atmosphere from the raw seeing; the optics Gaussian fixed (a number)
        or, with ``optics_fwhm_arcsec`` None, solved so the FWHM is ``fwhm_geom_arcsec`` (OpSim's
        ``seeingFwhmGeom``; None or NaN: :func:`fwhm_geom` of the raw seeing)."""
        airmass = airmass_ks(altitude_deg)
        atm = atmosphere_fwhm(raw_seeing_arcsec, band, airmass)
        if optics_fwhm_arcsec is None:
            target = fwhm_geom_arcsec
            if target is None or not math.isfinite(target) or target <= 0:
                target = fwhm_geom(raw_seeing_arcsec, band, airmass)
            optics_fwhm_arcsec = optics_fwhm_for(atm, target)
        return cls(atm_fwhm_arcsec=float(atm), optics_fwhm_arcsec=float(optics_fwhm_arcsec))

    @property
    def fwhm_arcsec(self) -> float:
        """True FWHM of the convolution (FWHMgeom's definition)."""
        return true_fwhm(self.atm_fwhm_arcsec, self.optics_fwhm_arcsec)

    def galsim(self, gsparams=None):
        """The PSF as a GalSim profile."""
        import galsim

        atm = galsim.Kolmogorov(fwhm=self.atm_fwhm_arcsec, gsparams=gsparams)
        if self.optics_fwhm_arcsec <= 0:
            return atm
        return galsim.Convolve(atm, galsim.Gaussian(fwhm=self.optics_fwhm_arcsec, gsparams=gsparams))


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
