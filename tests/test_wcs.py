"""The WCS the way imSim v2 builds it, checked against imSim's own eimage of OpSim visit 449053.

Figures found here (issue 12): R22_S11's header WCS agrees with imSim's within 0.029 px
(obs_lsst site constants, the default) and 0.005 px (imSim-2022's, with which that eimage was made)
over a 9x9 grid; stars drawn from imSim's skyCatalog land within 0.1 px of imSim's WCS; batoid's
field angles on corner sensors agree with obs_lsst's radial polynomial within 0.06" where the
distortion is 8.6"; rotTelPos-only, rotSkyPos-only and both-given visits agree within 0.25 deg.
"""

import math

import numpy as np
import pytest

from conftest import SHARED, needs_shared
from dc2flow import camera, wcs

EIMAGE = SHARED / "eimage_00449053-1-r-R22_S11-det094.fits.gz"
SKYCAT = SHARED / "skycat_449053"
# OpSim visit 449053 (small_opsim_9683.db): snap 1 of 2, 15 s each, 2 s readout
RA, DEC, ROTTEL, ROTSKY = 54.3712096044475, -35.8373231129231, 24.3157942276737, 111.640693622012
START, SNAP_EXPTIME, READOUT = 61017.0451099272, 15.0, 2.0
MJD_SNAP1 = START + (1 * (SNAP_EXPTIME + READOUT) + SNAP_EXPTIME / 2) / 86400.0


def _imsim_wcs():
    import galsim
    from astropy.io import fits

    return galsim.GSFitsWCS(header=dict(fits.getheader(EIMAGE)))


def _grid(sensor, n=9):
    gx, gy = np.meshgrid(np.linspace(0, sensor.nx - 1, n), np.linspace(0, sensor.ny - 1, n))
    return gx.ravel(), gy.ravel()


@needs_shared()
@pytest.mark.parametrize("site, tolerance_px", [("obs_lsst", 0.05), ("imsim-2022", 0.01)])
def test_r22_s11_header_agrees_with_imsims_eimage(site, tolerance_px):
    ref = _imsim_wcs()
    s = camera.get_sensor("R22_S11")
    ours = wcs.VisitWcs(RA, DEC, MJD_SNAP1, "r", ROTTEL, wcs.WcsSettings(site=site)).sensor_wcs(s)
    gx, gy = _grid(s)
    ra, dec = ref.xyToradec(gx, gy, units="rad")
    x, y = ours.radecToxy(ra, dec, units="rad")
    assert np.hypot(x - gx, y - gy).max() < tolerance_px
    # the header as FITS readers see it: astropy reads ours as it reads imSim's
    from astropy.io import fits
    from astropy.wcs import WCS

    h = fits.Header()
    for key, value in wcs.header_cards(ours).items():
        h[key] = value
    mine, theirs = WCS(h), WCS(fits.getheader(EIMAGE))
    a = mine.all_pix2world(np.stack([gx, gy], 1), 1)
    b = theirs.all_pix2world(np.stack([gx, gy], 1), 1)
    sep = 3600 * np.hypot((a[:, 0] - b[:, 0]) * np.cos(np.radians(DEC)), a[:, 1] - b[:, 1])
    assert sep.max() < tolerance_px * 0.2


@needs_shared()
def test_the_facts_that_matter():
    """What moves R22_S11 off imSim's: +180 deg on rotTelPos, snap 0 instead of 1, no refraction."""
    ref = _imsim_wcs()
    s = camera.get_sensor("R22_S11")
    gx, gy = _grid(s, 3)
    ra, dec = ref.xyToradec(gx, gy, units="rad")

    def off(mjd=MJD_SNAP1, rot=ROTTEL, **settings):
        w = wcs.VisitWcs(RA, DEC, mjd, "r", rot, wcs.WcsSettings(site="imsim-2022", **settings)).sensor_wcs(s)
        x, y = w.radecToxy(ra, dec, units="rad")
        return np.hypot(x - gx, y - gy).max()

    assert off() < 0.01
    assert off(rot=ROTTEL + 180.0) > 1000.0                    # DC2's upside-down camera
    assert off(mjd=START + SNAP_EXPTIME / 2 / 86400.0) > 1.0   # snap 0
    assert off(pressure_kpa=0.0) > 0.3                         # refraction left out


def _instcat(path, stars, rotation=("rotskypos", "rottelpos")):
    lines = [f"rightascension {RA!r}", f"declination {DEC!r}", f"mjd {MJD_SNAP1!r}", "altitude 62.8463925892494",
             "azimuth 110.381811356298", "filter 2", "seeing 0.663846738172267", f"vistime {SNAP_EXPTIME}",
             "obshistid 449053", "seed 449053", "nsnap 2", "seqnum 3"]
    if "rotskypos" in rotation:
        lines.append(f"rotskypos {ROTSKY!r}")
    if "rottelpos" in rotation:
        lines.append(f"rottelpos {ROTTEL!r}")
    for row in stars:
        lines.append(f"object {row.id} {row.ra!r} {row.dec!r} {row.magnorm!r} {row.sed_filepath} 0 0 0 0 0 0 point "
                     f"none CCM {row.MW_av!r} {row.MW_rv!r}")
    path.write_text("\n".join(lines) + "\n")
    return path


@needs_shared()
def test_stars_of_imsims_skycatalog_land_where_imsims_wcs_puts_them(tmp_path):
    """The 683 stars of imSim's skyCatalog for R22_S11, rendered (noiseless) through the whole
    pipeline; the bright isolated ones' adaptive-moment centroids against imSim's WCS."""
    import galsim
    import pandas as pd
    import pyarrow.parquet as pq
    from astropy.io import fits

    from conftest import run_stages

    stars = pq.read_table(SKYCAT / "pointsource_9683_449053_det94.parquet").to_pandas()
    assert len(stars) == 683
    cat = _instcat(tmp_path / "instcat_449053.txt", stars.itertuples())
    run = run_stages(tmp_path / "run", cat, ["R22_S11"],
                     {"scene": {"sed_dir": str(SHARED / "sed_library")}, "render": {"noise": False}})
    image = run["images"]["R22_S11"]
    data = fits.getdata(image).astype(float) - fits.getheader(image)["SKYLEVEL"]
    truth = pd.read_csv(run["truth"]["R22_S11"], sep="\t")
    ref = _imsim_wcs()
    x, y = ref.radecToxy(truth["ra_deg"].to_numpy(), truth["dec_deg"].to_numpy(), units="deg")
    inside = (x > 20) & (x < 4076) & (y > 20) & (y < 3984)
    assert 200 <= inside.sum() <= 232          # imSim's WCS puts 216 of the catalog's stars on it
    near = np.hypot(x[:, None] - x[None, :], y[:, None] - y[None, :])
    np.fill_diagonal(near, np.inf)
    good = inside & (truth["flux_drawn"].to_numpy() > 5e4) & (near.min(axis=1) > 20)
    assert good.sum() >= 20
    offsets = []
    img = galsim.ImageD(data, xmin=1, ymin=1)
    for xi, yi in zip(x[good], y[good]):
        ix, iy = int(round(xi)), int(round(yi))
        stamp = img[galsim.BoundsI(ix - 12, ix + 12, iy - 12, iy + 12)]
        mom = galsim.hsm.FindAdaptiveMom(stamp)
        offsets.append(math.hypot(mom.moments_centroid.x - xi, mom.moments_centroid.y - yi))
    # imSim's header maps DM pixels (0-based) into the 1-based image, as ours does: no shift
    print(f"{len(offsets)} stars: median {np.median(offsets):.4f} px, max {np.max(offsets):.4f} px")
    assert np.max(offsets) < 0.1, np.sort(offsets)[-5:]


def _up_angle(visit, det_name="R22_S11"):
    """Position angle (deg, N through E) of the sensor's +y axis at its centre."""
    w = wcs.for_visit(visit).sensor_wcs(camera.get_sensor(det_name))
    ra, dec = w.xyToradec(np.array([2047.5, 2047.5]), np.array([2001.5, 2101.5]), units="deg")
    return math.degrees(math.atan2((ra[1] - ra[0]) * math.cos(math.radians(dec[0])), dec[1] - dec[0])) % 360


@needs_shared()
@pytest.mark.parametrize("catalog", ["example_instance_catalog.txt", "phosim_cat_466749.txt"])
def test_rottelpos_only_rotskypos_only_and_both_agree(tmp_path, catalog):
    """DC2's catalogs, with their rotskypos or rottelpos line removed: the derived angle and the
    WCS agree with the both-given header within 0.25 deg (found: 0.04 and 0.02 deg)."""
    import warnings

    from dc2flow.catalog import read_header

    header = [line for line in (SHARED / catalog).read_text().splitlines() if not line.startswith(("object", "includeobj"))]
    visits = {}
    for drop in (None, "rottelpos", "rotskypos"):
        path = tmp_path / f"{drop}.txt"
        path.write_text("\n".join(line for line in header if drop is None or not line.startswith(drop + " ")) + "\n")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            visits[drop] = read_header(path)
        derived = [str(w.message) for w in caught if "parallactic" in str(w.message)]
        assert len(derived) == (drop is not None), derived
    both = visits[None]
    assert both.rotation_given == "both" and visits["rottelpos"].rotation_given == "rotskypos"
    assert visits["rottelpos"].rottelpos_deg == pytest.approx(both.rottelpos_deg, abs=0.25)
    assert visits["rotskypos"].rotskypos_deg == pytest.approx(both.rotskypos_deg, abs=0.25)
    angles = [_up_angle(v) for v in visits.values()]
    assert max(angles) - min(angles) < 0.25
    # the sensor's +y lands near PA 270 - rotSkyPos
    assert angles[0] == pytest.approx((270.0 - both.rotskypos_deg) % 360, abs=0.5)


@needs_shared()
def test_opsim_449053_orientation_is_imsims():
    """imSim's eimage: R22_S11's +y at PA 157.87 (270 - rotSkyPos 111.64 = 158.36, within 0.5)."""
    import warnings

    from dc2flow.catalog import Visit

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        visit = Visit(visit=449053, ra_deg=RA, dec_deg=DEC, mjd=MJD_SNAP1, filter=2, band="r", rotskypos_deg=ROTSKY,
                      rottelpos_deg=ROTTEL, seeing_arcsec=0.66, exptime_s=15.0, seed=449053, altitude_deg=62.85,
                      azimuth_deg=110.4, nsnap=2, seqnum=3, moon_ra_deg=0.0, moon_dec_deg=0.0, moon_alt_deg=-20.0,
                      moon_phase=75.0, dist2moon_deg=88.0, sun_alt_deg=-17.0, path="opsim")
    assert _up_angle(visit) == pytest.approx(157.87, abs=0.02)
    assert _up_angle(visit) == pytest.approx((270.0 - ROTSKY) % 360, abs=0.5)


@pytest.mark.parametrize("det_name", ["R01_S00", "R43_S22", "R10_S00"])
def test_corner_sensor_distortion_against_obs_lsst_polynomial(det_name):
    """batoid's ray trace and obs_lsst's radial FocalPlane->FieldAngle polynomial model the same
    optics: on corner sensors (r 312-370 mm, 8.6" of distortion) they agree within 0.1"."""
    vw = wcs.VisitWcs(RA, DEC, MJD_SNAP1, "r", ROTTEL)
    s = camera.get_sensor(det_name)
    thx, thy = vw.field_samples(s)
    fx, fy = vw.field_to_focal(thx, thy)
    r = np.hypot(fx, fy)
    angle = np.degrees(np.hypot(thx, thy)) * 3600
    poly = camera.LSSTCAM.field_angle_arcsec(r)
    assert np.abs(angle - poly).max() < 0.1
    assert (r * camera.PLATE_SCALE_ARCSEC_PER_MM - poly).min() > 5.0     # the distortion is real
    # the fitted TAN-SIP against the exact chain, over the sensor
    sip = vw.sensor_wcs(s)
    gx, gy = _grid(s)
    ra, dec = sip.xyToradec(gx, gy, units="deg")
    ex, ey = vw.icrf_to_pixel(s, ra, dec)
    assert np.hypot(ex - gx, ey - gy).max() < 1e-3


def test_local_jacobians_are_galsims():
    import galsim

    vw = wcs.VisitWcs(RA, DEC, MJD_SNAP1, "r", ROTTEL)
    sip = vw.sensor_wcs(camera.get_sensor("R01_S00"))
    x, y = np.array([10.0, 2000.3, 4000.0]), np.array([5.0, 1999.9, 3990.0])
    jac = wcs.local_jacobians(sip, x, y)
    for i in range(3):
        expect = sip.jacobian(image_pos=galsim.PositionD(x[i], y[i])).getMatrix().ravel()
        np.testing.assert_allclose(jac[i], expect, rtol=1e-9, atol=1e-12)
    # it varies over a corner sensor (distortion): the scale by ~0.2 %
    assert abs(np.linalg.det(jac[0].reshape(2, 2)) / np.linalg.det(jac[2].reshape(2, 2)) - 1) > 1e-4


def test_settings_from_options_and_bad_values():
    from dc2flow.errors import WcsError

    s = wcs.WcsSettings.from_options({"camera": {"description": None, "site": "imsim-2022", "pressure_kpa": None,
                                                 "temperature_k": 275.0}})
    assert (s.site, s.temperature_k, s.pressure) == ("imsim-2022", 275.0, pytest.approx(wcs.DEFAULT_PRESSURE_KPA))
    with pytest.raises(WcsError, match="camera.site: unknown site"):
        wcs.WcsSettings.from_options({"camera": {"site": "paranal"}})
    with pytest.raises(WcsError, match="camera.optics: cannot load the batoid optics"):
        wcs.VisitWcs(RA, DEC, MJD_SNAP1, "r", ROTTEL, wcs.WcsSettings(optics="NoSuch_<band>.yaml"))


def test_ut1_minus_utc_is_astropys_bundled_iers_table():
    """dc2flow reads UT1-UTC from the IERS-A file astropy bundles (1.5 s less per process than
    astropy's IERS_Auto); it agrees with astropy's value, across a leap second and past the table."""
    import warnings

    import astropy.time
    from astropy.utils import iers

    iers.conf.auto_download = False
    iers.conf.iers_degraded_accuracy = "ignore"
    iers.conf.auto_max_age = None
    mjd, _ = wcs._ut1_utc_table()
    dates = [50000.25, 57753.9, 57754.0, 57754.5, 60000.0, 60800.7, float(mjd[-1]) - 0.5, float(mjd[-1]) + 900.0]
    for m in dates:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs = float(astropy.time.Time(m, format="mjd", scale="utc").delta_ut1_utc)
        # astropy overwrites the file's Bulletin B values with its IERS-B table: < 0.1 ms since 1990
        assert wcs.ut1_minus_utc(m) == pytest.approx(theirs, abs=1e-4), m
    # 2017's leap second: UT1-UTC jumps by 1 s at 57754.0, not spread over the day before it
    assert abs(wcs.ut1_minus_utc(57753.99) - wcs.ut1_minus_utc(57753.5)) < 0.01
    assert wcs.ut1_minus_utc(57754.0) - wcs.ut1_minus_utc(57753.99) == pytest.approx(1.0, abs=0.01)
    assert wcs.ut1_minus_utc(float(mjd[-1]) + 1e4) == wcs.ut1_minus_utc(float(mjd[-1]))  # no extrapolation
    site = wcs.Site(61000.5, 620.0, wcs.WcsSettings())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        utc = astropy.time.Time(61000.5, format="mjd", scale="tai").utc
    assert (site.utc1 - wcs.MJD_ZERO_JD) + site.utc2 == pytest.approx(utc.mjd, abs=1e-11)
    assert wcs.Site(61000.5, 620.0, wcs.WcsSettings(dut1_s=0.25)).dut1 == 0.25
