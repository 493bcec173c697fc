"""Fluxes agree with GalSim's own chromatic machinery; dust comes from dust_extinction."""

import galsim
import numpy as np
import pandas as pd
import pytest

from conftest import SED_DIR, needs_shared
from dc2flow import photometry as ph

STAR = "starSED/kurucz/km20_4500.fits_g00_4600.gz"
GAL = "galaxySED/Burst.25E09.02Z.spec.gz"


def _galsim_photons(sed_path, magnorm, z, iav, irv, gav, grv, band, exptime):
    """Reference: GalSim SED -> magnorm at 500 nm -> internal dust -> redshift -> MW dust -> bandpass,
    as imSim's InstCatalog (withFluxDensity of AB magnorm at 500 nm, astropy's units)."""
    import astropy.units as u

    data = np.loadtxt(sed_path)
    sed = galsim.SED(galsim.LookupTable(data[:, 0], data[:, 1], interpolant="linear"), "nm", "flambda")
    fnu = (magnorm * u.ABmag).to(u.erg / u.s / u.cm**2 / u.Hz)
    sed = sed.withFluxDensity(fnu.to_value(u.ph / u.nm / u.s / u.cm**2, u.spectral_density(500 * u.nm)), 500.0)
    if iav:
        sed = sed * (lambda w: ph.ccm_transmission(np.asarray(w), iav, irv))
    sed = sed.atRedshift(z)
    if gav:
        sed = sed * (lambda w: ph.ccm_transmission(np.asarray(w), gav, grv))
    return sed.calculateFlux(ph.bandpass(band)) * ph.COLLECTING_AREA_CM2 * exptime


@needs_shared()
@pytest.mark.parametrize("name,z,iav,gav,band", [(STAR, 0.0, 0.0, 0.0, "r"), (STAR, 0.0, 0.0, 0.3, "g"),
                                                 (GAL, 0.8, 0.4, 0.1, "i"), (GAL, 2.5, 0.2, 0.05, "u")])
def test_object_photons_match_galsim(name, z, iav, gav, band):
    table = pd.DataFrame(dict(sed=[name], magnorm=[22.0], redshift=[z], internal_av=[iav], internal_rv=[3.1],
                              galactic_av=[gav], galactic_rv=[3.1]))
    got, fallback = ph.object_photons(table, band, 30.0, ph.SedLibrary(SED_DIR))
    want = _galsim_photons(SED_DIR / name, 22.0, z, iav, 3.1, gav, 3.1, band, 30.0)
    assert not fallback[0]
    assert got[0] == pytest.approx(want, rel=5e-3)


def test_ccm_matches_dust_extinction_at_any_rv():
    from dust_extinction.parameter_averages import CCM89
    import astropy.units as u

    wave = np.array([350.0, 500.0, 550.0, 800.0, 2000.0])
    for rv in (2.5, 3.1, 4.0, 5.5):
        want = 10 ** (-0.4 * 0.7 * CCM89(Rv=rv)(1000.0 / wave / u.micron))
        np.testing.assert_allclose(ph.ccm_transmission(wave, 0.7, rv), want, rtol=1e-3)
    # outside the law's range: the value at the nearest end
    assert ph.ccm_transmission(np.array([50.0]), 1.0, 3.1) == pytest.approx(ph.ccm_transmission(np.array([100.0]), 1.0, 3.1))


def test_one_magnitude_and_exposure_scale_linearly():
    table = pd.DataFrame(dict(sed=["nosuch/sed.gz"] * 2, magnorm=[20.0, 21.0], redshift=[0.0, 0.0],
                              internal_av=[0.0, 0.0], internal_rv=[3.1, 3.1], galactic_av=[0.0, 0.0], galactic_rv=[3.1, 3.1]))
    lib = ph.SedLibrary(None)
    f30, _ = ph.object_photons(table, "r", 30.0, lib)
    f15, _ = ph.object_photons(table, "r", 15.0, lib)
    assert f30[0] / f30[1] == pytest.approx(10**0.4) and f30 == pytest.approx(2 * f15)


@pytest.mark.parametrize("name,kind", [("starSED/kurucz/km10_4750.fits_g00_4790.gz", "blackbody 4790K"),
                                       ("starSED/phoSimMLT/lte033-4.5-1.0a+0.4.BT-Settl.spec.gz", "blackbody 3300K"),
                                       ("starSED/wDs/bergeron_10000_75.dat_10100.gz", "blackbody 10100K"),
                                       ("starSED/odd/star.gz", "blackbody 5800K"),
                                       ("galaxySED/Exp.20E09.25Z.spec.gz", "galaxy CWW_Sbc_ext.sed")])
def test_fallbacks_are_named(name, kind, tmp_path):
    table = ph.SedLibrary(tmp_path).get(name)      # an empty library: everything falls back
    assert table.fallback == kind
    assert np.all(table.fphot >= 0) and table.fphot.max() > 0


def test_fallback_counted_in_object_photons(tmp_path):
    table = pd.DataFrame(dict(sed=["galaxySED/none.gz"], magnorm=[20.0], redshift=[0.3], internal_av=[0.0],
                              internal_rv=[3.1], galactic_av=[0.0], galactic_rv=[3.1]))
    flux, fallback = ph.object_photons(table, "r", 30.0, ph.SedLibrary(tmp_path))
    assert fallback.tolist() == [True] and flux[0] > 0


def test_sky_level_is_realistic_and_scales_with_airmass():
    sky = ph.sky_electrons_per_pixel("r", 21.2, 1.0, 30.0, 0.2)
    assert 500 < sky < 1500   # LSST r-band dark sky, 30 s, 0.2" pixels: ~900 e-
    assert ph.sky_electrons_per_pixel("r", 21.2, 1.5, 30.0, 0.2) == pytest.approx(1.5 * sky)
    assert ph.COLLECTING_AREA_CM2 == pytest.approx(np.pi / 4 * 836.0**2 * (1 - 0.61**2))


@pytest.mark.parametrize("band", ph.BANDS)
def test_bandpass_is_galsims_file_to_the_last_bit(band):
    """bandpass() reads LSST_{band}.dat itself (no pandas); the PSF and sky it feeds must not move."""
    ours, galsims = ph.bandpass(band), galsim.Bandpass(f"LSST_{band}.dat", wave_type="nm")
    assert np.array_equal(ours.wave_list, galsims.wave_list)
    assert np.array_equal(ours(ours.wave_list), galsims(galsims.wave_list))
    assert (ours.blue_limit, ours.red_limit) == (galsims.blue_limit, galsims.red_limit)
    assert ph.effective_wavelength_nm(band) == galsims.effective_wavelength
    flat = galsim.SED(galsim.LookupTable([50.0, 3000.0], [1.0, 1.0]), "nm", "fnu")
    ab = galsims.withZeropoint("AB")
    assert ph.ab_zero_photons(band) == flat.withMagnitude(0.0, ab).calculateFlux(ab)


@needs_shared()
def test_magnorm_0_is_ab_0_at_500_nm_as_imsim():
    """imSim's InstCatalog normalises every SED to the photon flux density of AB 0 at 500 nm (astropy's
    units); GalSim's withMagnitude through a LookupTable([499, 500, 501], [0, 1, 0]) band would be 1.25x
    that (the table's spline interpolant): the library's SEDs are at imSim's level."""
    import astropy.units as u

    fnu = (0 * u.ABmag).to(u.erg / u.s / u.cm**2 / u.Hz)
    want = fnu.to_value(u.ph / u.nm / u.s / u.cm**2, u.spectral_density(500 * u.nm))
    for name in (STAR, GAL):
        table = ph.SedLibrary(SED_DIR).get(name)
        assert np.interp(500.0, table.wave_nm, table.fphot) == pytest.approx(want, rel=1e-6)
