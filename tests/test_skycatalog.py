"""skyCatalogs input: imSim's catalog for visit 449053 (683 stars, 2 galaxies) as object-table rows,
and the flux of a tophat SED against GalSim's chromatic machinery."""

from __future__ import annotations

import logging
import math

import galsim
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from conftest import SHARED
from dc2flow import opsim
from dc2flow import photometry as ph
from dc2flow.catalog import OBJECT_SCHEMA, read_objects
from dc2flow.errors import CatalogError
from dc2flow.skycatalog import load_sky_catalog, read_sky_catalog

D = SHARED / "skycat_449053"
YAML = D / "sky_cat_9683.yaml"
STARS = D / "pointsource_9683_449053_det94.parquet"
GALAXIES = D / "galaxy_9683_det94_det95_single_objs.parquet"


@pytest.fixture(scope="module")
def visit():
    return opsim.read_visit(D / "small_opsim_9683.db", 449053, snap=1)


@pytest.fixture
def galaxy_yaml(tmp_path):
    """The shared YAML with the galaxy template imSim's own tests use for the galaxy file that is in
    the shared folder (``sky_cat_multiproc_test.yaml``); the shared YAML's template names
    ``galaxy_9683_449053_det94.parquet``, which is not there."""
    text = YAML.read_text()
    old = r"galaxy_(?P<healpix>\d+)_449053_det94.parquet"
    assert old in text
    path = tmp_path / "sky_cat.yaml"
    path.write_text(text.replace(old, r"galaxy_(?P<healpix>\d+)_det94_det95_single_objs.parquet"))
    return path


def test_shared_yaml_gives_its_683_stars(visit, tmp_path, caplog):
    out = tmp_path / "objects.parquet"
    with caplog.at_level(logging.WARNING):
        counts, table = read_sky_catalog(YAML, visit, objects_out=out, sky_catalog_root=D)
    assert table is None and pq.read_schema(out).equals(OBJECT_SCHEMA, check_metadata=False)
    assert (counts.n_stars, counts.n_galaxies, counts.n_rows) == (683, 0, 683)
    # the missing galaxy file is said: the template's line, the name it expects, the file that is there instead
    assert (f"{YAML}:39: object type 'galaxy': its file_template 'galaxy_(?P<healpix>\\d+)_449053_det94.parquet' "
            f"matches no file in {D} for HEALPix pixel 9683 (which the star files have): "
            "galaxy_9683_449053_det94.parquet is missing, so the visit has no galaxy objects; Parquet files there "
            f"that no file_template matches: {GALAXIES.name} (fix the template or add the file)") in caplog.text
    assert counts.summary().endswith("; not read: galaxy objects (galaxy_9683_449053_det94.parquet missing, "
                                     "sky_cat_9683.yaml:39)")
    got = read_objects(out)
    want = pq.read_table(STARS).to_pandas()
    assert got["id"].tolist() == [str(i) for i in want["id"]]
    assert (got["obj_type"] == "point").all() and got["sed"].tolist() == want["sed_filepath"].tolist()
    np.testing.assert_array_equal(got["magnorm"], want["magnorm"])
    np.testing.assert_allclose(got["galactic_av"], want["MW_av"], rtol=1e-7)
    np.testing.assert_allclose(got["galactic_rv"], want["MW_rv"], rtol=1e-7)
    assert (got[["redshift", "gamma1", "gamma2", "kappa", "internal_av"]] == 0).all().all()
    assert counts.files == [str(YAML), str(STARS)]


def test_a_pixel_without_its_galaxy_file_is_named(galaxy_yaml, tmp_path, caplog):
    folder = tmp_path / "files"
    folder.mkdir()
    for name, target in (("pointsource_9683_449053_det94.parquet", STARS), ("pointsource_9684_449053_det94.parquet", STARS),
                         (GALAXIES.name, GALAXIES)):
        (folder / name).symlink_to(target)
    with caplog.at_level(logging.WARNING):
        cat = load_sky_catalog(galaxy_yaml, sky_catalog_root=folder)
    assert len(cat.star_files) == 2 and cat.galaxy_files == (str(folder / GALAXIES.name),)
    assert [summary for summary, _ in cat.missing] == [
        "galaxy objects (galaxy_9684_det94_det95_single_objs.parquet missing, sky_cat.yaml:39)"]
    assert (f"{galaxy_yaml}:39: object type 'galaxy': its file_template "
            "'galaxy_(?P<healpix>\\d+)_det94_det95_single_objs.parquet' matches no file in "
            f"{folder} for HEALPix pixel 9684 (which the star files have): galaxy_9684_det94_det95_single_objs.parquet "
            "is missing, so those pixels have no galaxy objects (fix the template or add the file)") in caplog.text


def test_galaxies_become_bulge_disk_and_knots(visit, galaxy_yaml, caplog):
    with caplog.at_level(logging.WARNING):
        counts, table = read_sky_catalog(galaxy_yaml, visit, sky_catalog_root=D)
    assert "file_template" not in caplog.text and "not read" not in counts.summary()   # every file is there
    assert (counts.n_stars, counts.n_galaxies) == (683, 2)
    rows = table.to_pandas()
    rows = rows[rows["obj_type"] != "point"].set_index("id")
    gal = pq.read_table(GALAXIES).to_pandas()
    assert len(rows) == 6
    for _, g in gal.iterrows():
        for comp in ("bulge", "disk", "knots"):
            r = rows.loc[f"{g['galaxy_id']}_{comp}"]
            axes = "disk" if comp == "knots" else comp
            assert r["obj_type"] == ("knots" if comp == "knots" else "sersic2d")
            assert r["major_arcsec"] == pytest.approx(g[f"size_{axes}_true"])
            assert r["minor_arcsec"] == pytest.approx(g[f"size_minor_{axes}_true"])
            assert r["pa_deg"] == g["position_angle_unlensed"]
            assert abs(r["magnorm"] - g[f"{comp}_magnorm"]) < 0.1  # the tophat's level, see below
            assert (r["redshift"], r["gamma1"], r["gamma2"], r["kappa"]) == (
                g["redshift"], g["shear_1"], g["shear_2"], g["convergence"])
            assert r["galactic_av"] == pytest.approx(g["MW_av"]) and r["galactic_rv"] == pytest.approx(3.1)
            if comp == "knots":
                assert r["npoints"] == int(g["n_knots"]) and r["sersic_n"] == 0
            else:
                assert r["sersic_n"] == g[f"sersic_{comp}"] and r["npoints"] == 0
            lo, hi, values = ph.parse_tophat(r["sed"])
            np.testing.assert_allclose(lo[:3], [100.0, 124.6, 155.2])
            np.testing.assert_allclose(hi[-1], 1999.8)
            np.testing.assert_allclose(values, np.asarray(g[f"sed_val_{comp}"]) / max(g[f"sed_val_{comp}"]),
                                       rtol=1e-6)


def test_radius_selects_around_the_boresight(visit):
    from astropy.coordinates import SkyCoord

    stars = pq.read_table(STARS).to_pandas()
    sep = SkyCoord(stars["ra"], stars["dec"], unit="deg").separation(
        SkyCoord(visit.ra_deg, visit.dec_deg, unit="deg")).deg
    ordered = np.sort(sep)
    radius = float(ordered[300] + ordered[301]) / 2  # between two stars: no tie at the edge
    counts, table = read_sky_catalog(YAML, visit, sky_catalog_root=D, radius_deg=radius)
    assert counts.n_stars == int((sep <= radius).sum()) == 301
    assert set(table["id"].to_pylist()) == {str(i) for i in stars["id"][sep <= radius]}


def _ab0_photons_500nm():
    """imSim's normalisation (InstCatalog._flux_density): AB magnitude 0 at 500 nm, photons/nm/s/cm^2."""
    import astropy.units as u

    fnu = (0 * u.ABmag).to(u.erg / u.s / u.cm**2 / u.Hz)
    return fnu.to_value(u.ph / u.nm / u.s / u.cm**2, u.spectral_density(500 * u.nm))


def test_magnorm_constant_is_imsims():
    assert ph.AB0_PHOTONS_500NM == pytest.approx(_ab0_photons_500nm(), rel=1e-9)


def _galsim_tophat_photons(lo, hi, values, magnorm, z, mw_av, band, exptime):
    """Independent: skyCatalogs' TophatSedFactory shape (L_nu -> constant f_lambda per bin, steps of
    0.001 nm) as a GalSim SED, normalised at 500 nm, redshifted, dimmed with dust_extinction's CCM89
    and integrated by GalSim through the LSST band."""
    from dust_extinction.parameter_averages import CCM89
    import astropy.units as u

    c = 2.99792458e17  # nm/s
    flam = values * c * (1 / lo - 1 / hi) / (hi - lo)
    wave, f = [lo[0] - 1.0], [0.0]
    for a, b, v in zip(lo, hi, flam):
        wave += [a, b - 0.001]
        f += [v, v]
    wave.append(hi[-1])
    f.append(0.0)
    sed = galsim.SED(galsim.LookupTable(wave, f, interpolant="linear"), "nm", "flambda")
    sed = sed.withFluxDensity(10 ** (-0.4 * magnorm) * _ab0_photons_500nm(), 500.0).atRedshift(z)
    w = np.linspace(300.0, 1100.0, 8001)
    dust = galsim.SED(galsim.LookupTable(w, 10 ** (-0.4 * mw_av * CCM89(Rv=3.1)(w * u.nm)), interpolant="linear"),
                      "nm", "1")
    bandpass = galsim.Bandpass(f"LSST_{band}.dat", "nm")
    return (sed * dust).calculateFlux(bandpass) * ph.COLLECTING_AREA_CM2 * exptime


@pytest.mark.parametrize("band, z, mw_av", [("r", 1.161731, 0.027527), ("i", 0.35, 0.2), ("g", 0.0, 0.0)])
def test_tophat_flux_matches_galsim(band, z, mw_av):
    cat = load_sky_catalog(YAML, D)
    values = np.asarray(pq.read_table(GALAXIES, columns=["sed_val_bulge"])["sed_val_bulge"][0].as_py())
    name = ph.tophat_sed_name(cat.tophat_lo_nm, cat.tophat_width_nm, values)
    lo, hi, vals = ph.parse_tophat(name)
    table = pd.DataFrame(dict(sed=[name, "starSED/none_5000.gz"], magnorm=[23.9, 20.0], redshift=[z, 0.0],
                              internal_av=[0.0, 0.0], internal_rv=[3.1, 3.1], galactic_av=[mw_av, 0.0],
                              galactic_rv=[3.1, 3.1]))
    got, fallback = ph.object_photons(table, band, 15.0, ph.SedLibrary(None))
    want = _galsim_tophat_photons(lo, hi, vals, 23.9, z, mw_av, band, 15.0)
    assert fallback.tolist() == [False, True]  # a tophat never falls back; the file SED beside it does
    assert got[0] == pytest.approx(want, rel=2e-3)


def test_tophat_of_one_flat_fnu_bin_is_ab_flat():
    """One bin from 400 to 1200 nm at magnorm m: f_lambda is constant over the bin, so the photon
    flux density is m's AB photons at 500 nm times lambda / 500 nm; through the r band (all inside), by hand."""
    name = ph.tophat_sed_name([400.0], [800.0], [1.0])
    table = pd.DataFrame(dict(sed=[name], magnorm=[20.0], redshift=[0.0], internal_av=[0.0], internal_rv=[3.1],
                              galactic_av=[0.0], galactic_rv=[3.1]))
    got, _ = ph.object_photons(table, "r", 30.0, ph.SedLibrary(None))
    wave, thru = ph.band_grid("r")
    fphot = _ab0_photons_500nm() * 10 ** (-0.4 * 20.0) * wave / 500.0
    want = np.trapezoid(fphot * thru, wave) * ph.COLLECTING_AREA_CM2 * 30.0
    assert got[0] == pytest.approx(want, rel=1e-3)


def test_galaxy_magnorm_is_the_tophats_absolute_level(visit, galaxy_yaml):
    """The row's magnorm puts the tophat at skyCatalogs' absolute level (imSim v2's): L_nu of cosmoDC2
    (x 4.4659e13 W/Hz) at the luminosity distance of redshift_hubble in the YAML's cosmology, computed
    here by hand with skyCatalogs' monochromatic magnitude of the bin holding 500 nm
    (-2.5 log10(F_nu / Jy) + 8.90), which differs from f_lambda's at 500 nm by the bin's
    500^2 / (lo hi) only."""
    from astropy.cosmology import FlatLambdaCDM
    import yaml

    cosmo = yaml.safe_load(YAML.read_text())["Cosmology"]
    cosmology = FlatLambdaCDM(H0=cosmo["H0"], Om0=cosmo["Om0"], Ob0=cosmo["Ob0"])
    _, table = read_sky_catalog(galaxy_yaml, visit, sky_catalog_root=D)
    rows = table.to_pandas().set_index("id")
    gal = pq.read_table(GALAXIES).to_pandas()
    lo, width = 484.8, 30.0  # the bin holding 500 nm
    for _, g in gal.iterrows():
        dl_m = cosmology.luminosity_distance(g["redshift_hubble"]).value * 3.085677581491367e22
        for comp in ("bulge", "disk", "knots"):
            fnu = g[f"sed_val_{comp}"][13] * 4.4659e13 / (4 * math.pi * dl_m**2)
            mono = -2.5 * math.log10(fnu / 1e-26) + 8.90 - 2.5 * math.log10(500.0**2 / (lo * (lo + width)))
            assert rows.loc[f"{g['galaxy_id']}_{comp}", "magnorm"] == pytest.approx(mono, abs=1e-6)
            # the catalog's own magnorm columns are near it, not equal
            assert abs(g[f"{comp}_magnorm"] - mono) < 0.1


def test_errors_name_the_file(visit, tmp_path):
    with pytest.raises(CatalogError, match="cannot read the sky catalog"):
        read_sky_catalog(tmp_path / "none.yaml", visit)
    # the shared YAML's own skycatalog_root (imSim's ./tests/data) is not there: say so, name it
    with pytest.raises(CatalogError, match="the catalog folder does not exist") as info:
        read_sky_catalog(YAML, visit)
    assert str(YAML) in str(info.value) and "sky_catalog_root" in str(info.value)
    bad = tmp_path / "bad.yaml"
    bad.write_text("object_types: [1, 2\n")
    with pytest.raises(CatalogError, match="not valid YAML"):
        read_sky_catalog(bad, visit)
    # a star file without magnorm
    stars = pq.read_table(STARS).drop(["magnorm"])
    pq.write_table(stars, tmp_path / "pointsource_9683_449053_det94.parquet")
    with pytest.raises(CatalogError, match="has no column 'magnorm'") as info:
        read_sky_catalog(YAML, visit, sky_catalog_root=tmp_path)
    assert "pointsource_9683_449053_det94.parquet" in str(info.value)


def test_out_of_range_value_names_file_and_row(visit, tmp_path):
    stars = pq.read_table(STARS).to_pandas()
    stars.loc[stars.index[5], "magnorm"] = -20.0
    pq.write_table(__import__("pyarrow").Table.from_pandas(stars, preserve_index=False),
                   tmp_path / "pointsource_9683_449053_det94.parquet")
    with pytest.raises(CatalogError, match=r"pointsource_9683_449053_det94.parquet row 5: magnorm is out of range"):
        read_sky_catalog(YAML, visit, sky_catalog_root=tmp_path)
