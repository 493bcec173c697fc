"""The PSF is sized like OpSim's: imSim's FWHMgeom formula, and a true FWHM equal to it."""

import math

import galsim
import numpy as np
import pytest

from dc2flow import psf


def test_fwhm_formulae_are_imsims():
    # imSim's tests/test_psf.py values (OpsimDataLoader.getAirmass at altitude 52.542)
    assert psf.airmass_ks(52.542) == pytest.approx(1.24522984, abs=1e-7)
    x = psf.airmass_ks(52.542)
    atm = 0.7 * (622.20 / 500) ** -0.3 * x**0.6
    eff = 1.16 * math.sqrt((0.4 * x**0.6) ** 2 + 1.04 * atm**2)
    assert psf.fwhm_geom(0.7, "r", x) == pytest.approx(0.822 * eff + 0.052, rel=1e-12)


@pytest.mark.parametrize("seeing, band, altitude", [(0.5, "g", 80.0), (0.75, "r", 56.4), (1.2, "i", 35.0),
                                                    (0.69, "y", 60.0)])
def test_true_fwhm_equals_fwhm_geom(seeing, band, altitude):
    """The solved optics Gaussian makes the convolution exactly as wide as FWHMgeom, measured on
    GalSim's own drawn profile (calculateFWHM), not on the module's Hankel-transform table."""
    model = psf.PsfModel.for_visit(seeing, band, altitude)
    target = psf.fwhm_geom(seeing, band, psf.airmass_ks(altitude))
    measured = model.galsim().calculateFWHM(size=1024, scale=target / 200)
    assert measured == pytest.approx(target, rel=2e-3)
    assert model.fwhm_arcsec == pytest.approx(target, rel=1e-6)
    # dc2flow's PSF before (Kolmogorov of seeing X^0.6 (lambda/500)^-0.2, plain airmass, Gaussian 0.3")
    # was 7-15 % narrower than FWHMgeom above 50 deg altitude (the DC2 lesson this sizing fixes;
    # lower down its plain 1/sin(alt) airmass grows faster than Krisciunas & Schaefer's)
    x = 1 / math.sin(math.radians(altitude))
    lam = {"g": 480.0, "r": 622.0, "i": 754.0, "y": 970.0}[band]
    old = galsim.Convolve(galsim.Kolmogorov(fwhm=seeing * x**0.6 * (lam / 500) ** -0.2), galsim.Gaussian(fwhm=0.3))
    if altitude >= 50:
        assert old.calculateFWHM(size=1024, scale=target / 200) < 0.95 * target


def test_opsim_fwhm_geom_wins_and_a_fixed_optics_term_is_kept():
    assert psf.PsfModel.for_visit(0.75, "r", 56.4, fwhm_geom_arcsec=1.1).fwhm_arcsec == pytest.approx(1.1)
    assert psf.PsfModel.for_visit(0.75, "r", 56.4, fwhm_geom_arcsec=float("nan")).fwhm_arcsec == pytest.approx(
        psf.fwhm_geom(0.75, "r", psf.airmass_ks(56.4)))
    fixed = psf.PsfModel.for_visit(0.75, "r", 56.4, optics_fwhm_arcsec=0.3)
    assert fixed.optics_fwhm_arcsec == 0.3
    # the atmosphere alone wider than the target: no Gaussian, the Kolmogorov itself
    narrow = psf.PsfModel.for_visit(1.5, "u", 30.0, fwhm_geom_arcsec=0.5)
    assert narrow.optics_fwhm_arcsec == 0.0 and narrow.galsim().__class__.__name__ == "Kolmogorov"
    t, f = psf._width_ratio_table()
    assert np.all(np.diff(f) > 0) and f[0] == pytest.approx(1.0, abs=1e-5)
