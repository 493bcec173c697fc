"""Validation recovers the truth of a rendered sensor, flags a wrong one, and the pictures put
every sensor in its place."""

from __future__ import annotations

import io
import json
import logging
import shutil

import numpy as np
import pytest
from astropy.io import fits
from PIL import Image

from conftest import pixel_to_sky, run_stages
from dc2flow import camera
from dc2flow.errors import ValidationError
from dc2flow.synthetic import make_catalog
from dc2flow.mosaic import cutout, mosaic, mosaic_canvas, mosaic_size
from dc2flow.validation import RECORD_KEYS, STAR_COLUMNS, Thresholds, summarize_visit, validate_sensor, validate_visit
from dc2flow.errors import RenderError

pytestmark = pytest.mark.slow   # renders two full sensors (~3 s)

DET, MARKED = "R22_S11", "R22_S12"
RA0, DEC0, ROT = 60.0, -35.0, 37.0
MARKER_XY = (1000.0, 3000.0)            # 1-based pixel of the marker star on MARKED
CONTRACT = ("visit", "det_name", "band", "status", "flags", "n_truth", "n_detected", "n_matched",
            "astrometry_median_px", "astrometry_median_arcsec", "photometry_slope", "photometry_median_dmag",
            "psf_fwhm_arcsec", "psf_fwhm_model_arcsec", "sky_e_per_px", "sky_model_e_per_px", "thresholds")


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """DET: a 7 x 7 grid of stars of magnorm 16-21 among field stars and galaxies; MARKED: one
    magnorm-12 marker star (and little else)."""
    tmp = tmp_path_factory.mktemp("validation")
    rng = np.random.default_rng(3)
    gx, gy = np.meshgrid(np.linspace(300, 3800, 7), np.linspace(300, 3700, 7))
    x = gx.ravel() + rng.uniform(-50, 50, gx.size)
    y = gy.ravel() + rng.uniform(-50, 50, gy.size)
    ra, dec = pixel_to_sky(DET, RA0, DEC0, ROT, x, y)
    mra, mdec = pixel_to_sky(MARKED, RA0, DEC0, ROT, [MARKER_XY[0]], [MARKER_XY[1]])
    stars = list(zip(ra, dec, np.linspace(16.0, 21.0, x.size))) + [(mra[0], mdec[0], 12.0)]
    cat = make_catalog(outdir=tmp / "cat", visit=77, ra_deg=RA0, dec_deg=DEC0, band="r", seed=5, rotskypos_deg=ROT,
                       radius_deg=0.2, star_density=300.0, galaxy_density=500.0, bright_stars=stars)
    out = run_stages(tmp / "run", cat, [DET, MARKED])
    out["tmp"] = tmp
    out["records"] = {d: tmp / "validation" / f"{d}.json" for d in (DET, MARKED)}
    for d, path in out["records"].items():
        validate_sensor(out["images"][d], out["truth"][d], path, stars_out=path.with_suffix(".tsv"))
    return out


def _record(path):
    return json.loads(path.read_text())


def test_validation_recovers_the_truth(scene):
    rec = _record(scene["records"][DET])
    assert set(CONTRACT) <= set(rec) and set(RECORD_KEYS) == set(rec)
    assert (rec["visit"], rec["det_name"], rec["band"]) == (77, DET, "r")
    # an instance catalog carries no OpSim sky brightness: that check alone is skipped
    assert rec["status"] == "ok" and rec["flags"] == [] and rec["skipped"] == ["sky_opsim"]
    assert rec["n_bright"] >= 40 and rec["n_matched"] >= rec["n_bright"] and rec["n_detected"] >= rec["n_matched"]
    assert rec["astrometry_median_px"] < 0.1
    assert rec["astrometry_median_arcsec"] == pytest.approx(0.2 * rec["astrometry_median_px"], rel=1e-3)
    assert abs(rec["photometry_slope"]) < 0.01          # mag per mag over 16 < magnorm < 21
    assert abs(rec["photometry_median_dmag"]) < 0.01
    assert rec["psf_fwhm_arcsec"] == pytest.approx(rec["psf_fwhm_model_arcsec"], rel=0.05)
    # the model with the pixel is wider than the header's atmosphere (+) optics FWHM
    assert rec["psf_fwhm_model_arcsec"] > rec["psf_fwhm_header_arcsec"]
    # rendered stars against OpSim: true FWHM within 5 % of the visit's FWHMgeom (the header's is
    # imSim's formula of the catalog's seeing), round PSF within LSST's ellipticity requirement
    assert rec["psf_fwhm_true_arcsec"] == pytest.approx(rec["psf_fwhm_geom_arcsec"], rel=0.05)
    assert rec["psf_e_median"] <= 0.04 and rec["psf_e_frac_high"] <= 0.05
    assert rec["sky_e_per_px"] == pytest.approx(rec["sky_model_e_per_px"], rel=0.01)
    assert rec["thresholds"] == Thresholds.defaults().to_dict()
    header = (scene["records"][DET].with_suffix(".tsv")).read_text().splitlines()[0]
    assert header.split("\t") == list(STAR_COLUMNS)


def test_sparse_sensor_skips_star_checks(scene):
    rec = _record(scene["records"][MARKED])
    assert rec["status"] == "ok" and rec["skipped"] == ["astrometry", "photometry", "psf", "psf_geom", "psf_ellipticity",
                                                    "sky_opsim"]
    assert rec["sky_e_per_px"] == pytest.approx(rec["sky_model_e_per_px"], rel=0.01)


def test_same_inputs_same_record_bytes(scene, tmp_path):
    again = tmp_path / "again.json"
    validate_sensor(scene["images"][DET], scene["truth"][DET], again)
    assert again.read_bytes() == scene["records"][DET].read_bytes()


def _edited_copy(src, dst, edit):
    shutil.copy(src, dst)
    with fits.open(dst, mode="update") as hdul:
        edit(hdul[0])
    return dst


def test_wcs_shifted_by_2px_is_flagged(scene, tmp_path, caplog):
    bad = _edited_copy(scene["images"][DET], tmp_path / "shifted.fits",
                       lambda hdu: hdu.header.__setitem__("CRPIX1", hdu.header["CRPIX1"] + 2.0))
    with caplog.at_level(logging.WARNING, logger="dc2flow"):
        rec = validate_sensor(bad, scene["truth"][DET], tmp_path / "shifted.json")
    assert rec["status"] == "flagged" and rec["flags"] == ["astrometry"]
    assert rec["astrometry_median_px"] == pytest.approx(2.0, abs=0.1)
    assert _record(tmp_path / "shifted.json") == rec                  # written all the same
    assert "VALIDATION FLAGGED visit 77 R22_S11: astrometry" in caplog.text


def test_wrong_sky_is_flagged(scene, tmp_path):
    bad = _edited_copy(scene["images"][DET], tmp_path / "sky.fits", lambda hdu: hdu.data.__iadd__(50.0))
    rec = validate_sensor(bad, scene["truth"][DET], tmp_path / "sky.json")
    assert rec["flags"] == ["sky"] and rec["sky_e_per_px"] == pytest.approx(rec["sky_model_e_per_px"] + 50, rel=0.01)


def test_summary_table_figure_and_strict(scene, tmp_path):
    bad = _edited_copy(scene["images"][DET], tmp_path / "shifted.fits",
                       lambda hdu: hdu.header.__setitem__("CRPIX2", hdu.header["CRPIX2"] - 2.0))
    flagged = tmp_path / "v" / f"{DET}.json"
    validate_sensor(bad, scene["truth"][DET], flagged, stars_out=flagged.with_suffix(".tsv"))
    records = [flagged, scene["records"][MARKED]]
    table, plot = tmp_path / "summary.tsv", tmp_path / "summary.png"
    recs = summarize_visit(records, table, plot)                   # not strict: no error
    assert [r["det_name"] for r in recs] == [DET, MARKED]
    rows = [line.split("\t") for line in table.read_text().splitlines()]
    assert rows[0][:3] == ["visit", "snap", "det_name"]
    assert rows[1][:6] == ["77", "0", DET, "r", "flagged", "astrometry"] and rows[2][4] == "ok"
    assert Image.open(plot).size[0] > 500
    summarize_visit(records, tmp_path / "again.tsv", tmp_path / "again.png")
    assert (tmp_path / "again.png").read_bytes() == plot.read_bytes()     # no time stamps
    with pytest.raises(ValidationError, match=r"summary2.tsv: visit 77: 1 sensor\(s\) failed validation "
                                              r"\(R22_S11: astrometry\).*validation.strict: false"):
        summarize_visit(records, tmp_path / "summary2.tsv", strict=True)


def test_visit_validation_matches_per_sensor_whatever_the_jobs(scene, tmp_path):
    images = [scene["images"][DET], scene["images"][MARKED]]
    truths = [scene["truth"][DET], scene["truth"][MARKED]]
    for jobs in (1, 2):
        out = tmp_path / f"jobs{jobs}"
        recs = validate_visit(images, truths, out, out / "summary.tsv", out / "summary.png", jobs=jobs)
        assert [r["det_name"] for r in recs] == [DET, MARKED]
        for d in (DET, MARKED):   # the same records as validating each sensor alone
            assert (out / f"{d}.json").read_bytes() == scene["records"][d].read_bytes()
            assert (out / f"{d}.tsv").read_bytes() == scene["records"][d].with_suffix(".tsv").read_bytes()
    assert (tmp_path / "jobs1" / "summary.png").read_bytes() == (tmp_path / "jobs2" / "summary.png").read_bytes()
    with pytest.raises(RenderError, match="2 images but 1 truth tables"):
        validate_visit(images, truths[:1], tmp_path / "bad", tmp_path / "bad.tsv")
    with pytest.raises(RenderError, match="cannot read DET_NAME"):
        validate_visit([truths[0]], [truths[0]], tmp_path / "bad", tmp_path / "bad.tsv")


def test_mosaic_puts_the_marker_star_in_place(scene, tmp_path):
    out = tmp_path / "mosaic.png"
    images = [scene["images"][DET], scene["images"][MARKED]]
    summary = mosaic(images, out, bin_factor=16, stretch="asinh")
    png = np.asarray(Image.open(out))
    assert png.shape == (3954, 3960, 3) and tuple(summary["size"]) == mosaic_size(16) == (3960, 3954)
    # where the marker must be, from the camera geometry alone: lower-left corner of the focal plane
    x_min = min(s.x_mm - s.nx * 0.005 for s in camera.SENSORS)
    y_min = min(s.y_mm - s.ny * 0.005 for s in camera.SENSORS)
    x_mm, y_mm = camera.get_sensor(MARKED).pixel_to_focal_plane(*MARKER_XY)
    col, row_up = (x_mm - x_min) / 0.16, (y_mm - y_min) / 0.16
    canvas, _, placed = mosaic_canvas(images, 16)
    assert placed == [DET, MARKED]
    r, c = np.unravel_index(np.nanargmax(canvas), canvas.shape)
    assert abs(c + 0.5 - col) <= 1.0 and abs(r + 0.5 - row_up) <= 1.0
    assert tuple(png[png.shape[0] - 1 - r, c]) == (255, 255, 255)   # PNG rows run top-down
    # the rendered sensors are grey (sky), an unrendered one (R22_S10) black
    for det, grey in ((DET, True), (MARKED, True), ("R22_S10", False)):
        s = camera.get_sensor(det)
        cc, rr = int((s.x_mm - 10 - x_min) / 0.16), png.shape[0] - 1 - int((s.y_mm - 10 - y_min) / 0.16)
        assert (png[rr, cc].min() > 0) == grey, det
    assert mosaic(images, tmp_path / "again.png", 16, "asinh") == summary
    assert (tmp_path / "again.png").read_bytes() == out.read_bytes()


def test_cutout_size_box_and_bytes(scene, tmp_path):
    assert cutout(scene["images"][DET], tmp_path / "c.png", 4, "zscale") == (1024, 1001)
    assert cutout(scene["images"][DET], tmp_path / "b.png", 2, "asinh", box=(101, 300, 51, 150)) == (100, 50)
    assert Image.open(io.BytesIO((tmp_path / "b.png").read_bytes())).size == (100, 50)
    cutout(scene["images"][DET], tmp_path / "c2.png", 4, "zscale")
    assert (tmp_path / "c2.png").read_bytes() == (tmp_path / "c.png").read_bytes()


def _figures(**kw):
    rec = {"n_bright_expected": 10, "n_bright": 10, "astrometry_median_px": 0.05, "photometry_slope": 0.0,
           "photometry_median_dmag": 0.01, "psf_fwhm_arcsec": 0.8, "psf_fwhm_model_arcsec": 0.8,
           "psf_fwhm_true_arcsec": 0.9, "psf_fwhm_geom_arcsec": 0.91, "psf_e_median": 0.01, "psf_e_frac_high": 0.0,
           "sky_e_per_px": 100.0, "sky_model_e_per_px": 100.0, "sky_mag_measured": 20.5, "sky_mag_opsim": 20.52}
    return {**rec, **kw}


def test_unfittable_slope_is_skipped_not_flagged():
    from dc2flow.validation import Thresholds, checks

    t = Thresholds.defaults()
    assert checks(_figures(photometry_slope=None), t) == ([], ["photometry_slope"])
    assert checks(_figures(photometry_slope=None, photometry_median_dmag=5.0), t) == (["photometry"],
                                                                                      ["photometry_slope"])
    assert checks(_figures(), t) == ([], [])


def test_psf_against_opsim_fwhm_geom_and_the_ellipticity_requirement():
    from dc2flow.validation import Thresholds, checks

    t = Thresholds.defaults()
    assert checks(_figures(psf_fwhm_true_arcsec=0.80), t)[0] == ["psf_geom"]     # 12 % narrower than FWHMgeom
    assert checks(_figures(psf_fwhm_true_arcsec=None), t)[0] == ["psf_geom"]
    assert checks(_figures(psf_fwhm_geom_arcsec=None), t) == ([], ["psf_geom"])  # an older header
    assert checks(_figures(psf_e_median=0.05), t)[0] == ["psf_ellipticity"]
    assert checks(_figures(psf_e_frac_high=0.06), t)[0] == ["psf_ellipticity"]
    assert checks(_figures(sky_mag_measured=20.42), t)[0] == ["sky_opsim"]        # 9 % brighter than OpSim's
    assert checks(_figures(sky_mag_opsim=None), t) == ([], ["sky_opsim"])          # an instance catalog


def test_sky_brightness_and_depth_formulae():
    from dc2flow import photometry

    e = photometry.sky_electrons_per_pixel("r", 21.2, 1.0, 30.0, 0.2)
    assert photometry.sky_brightness_mag("r", e, 30.0, 0.2) == pytest.approx(21.2, abs=1e-9)
    # SMTN-002's r-band m5 for 30 s at FWHMeff 0.7" on a 21.2 mag sky is ~24.4; same engine, no read noise
    assert 24.0 < photometry.five_sigma_depth("r", e, 0.7, 30.0, 0.2) < 24.9
    # a sky 4x brighter loses 0.75 mag of depth
    assert (photometry.five_sigma_depth("r", e, 0.7, 30.0, 0.2) - photometry.five_sigma_depth("r", 4 * e, 0.7, 30.0, 0.2)
            == pytest.approx(0.7526, abs=1e-3))


def test_isolation_is_the_same_rule_for_expected_and_matched():
    from dc2flow.validation import ISOLATION_PX, isolated_stars

    # crowded: each of 5 stars has a second detection ISOLATION_PX / 2 away; one lone star
    xs = np.array([100.0, 300.0, 500.0, 700.0, 900.0, 2000.0])
    xd = np.concatenate([xs, xs[:5] + ISOLATION_PX / 2])
    yd = np.full(len(xd), 500.0)
    assert isolated_stars(xs, np.full(6, 500.0), xd, yd).tolist() == [False] * 5 + [True]
    assert isolated_stars(xs[:1], [500.0], xd[:1], yd[:1]).tolist() == [True]   # one detection: alone


def test_benchmark_reader_takes_the_last_row(tmp_path):
    from dc2flow.io import read_benchmark

    path = tmp_path / "b.tsv"
    path.write_text("s\th:m:s\tmax_rss\tcpu_time\n10.0\t0:00:10\tNA\t9.0\n20.0\t0:00:20\t2048.0\t19.0\n")
    assert read_benchmark(path) == {"runtime_s": 20.0, "max_rss_mb": 2048.0, "cpu_time_s": 19.0}
    assert read_benchmark(tmp_path / "absent.tsv") == {"runtime_s": None, "max_rss_mb": None, "cpu_time_s": None}


def test_a_jobs_own_peak_record_replaces_the_sampled_rss(tmp_path):
    """The render's exact high-water mark (dc2flow --peak-record, X.peak.json beside X.tsv) is the
    peak; Snakemake's sample stands where there is none or it is damaged; the CLI writes it only
    when the verb succeeds and removes a stale one when it starts."""
    import json
    import subprocess
    import sys

    from dc2flow.io import peak_record_path, read_benchmark

    path = tmp_path / "b.tsv"
    path.write_text("s\th:m:s\tmax_rss\tcpu_time\n20.0\t0:00:20\t200.0\t19.0\n")
    peak = tmp_path / "b.peak.json"
    assert peak_record_path(path) == str(peak)
    peak.write_text('{"max_rss_mb": 271.5}')
    assert read_benchmark(path)["max_rss_mb"] == 271.5
    peak.write_text("{")
    assert read_benchmark(path)["max_rss_mb"] == 200.0
    # a real verb: focal-plane succeeds and leaves its own peak; a failing verb leaves none
    record = tmp_path / "v.peak.json"
    subprocess.run([sys.executable, "-m", "dc2flow.cli", "--peak-record", str(record), "focal-plane"],
                   check=True, capture_output=True)
    got = json.loads(record.read_text())
    assert 10 < got["max_rss_mb"] < 2000 and got["cpu_time_s"] > 0
    bad = subprocess.run([sys.executable, "-m", "dc2flow.cli", "--peak-record", str(record), "parse",
                          str(tmp_path / "absent.txt"), "--visit-json", str(tmp_path / "v.json"),
                          "--objects", str(tmp_path / "o.parquet"), "--sources", str(tmp_path / "s.json")], capture_output=True)
    assert bad.returncode != 0 and not record.exists()
