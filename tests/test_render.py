"""Rendering: stars land where the image's own WCS says, fluxes scale, pixels are deterministic."""

from __future__ import annotations

import hashlib

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from conftest import pixel_to_sky, run_stages
from dc2flow.partition import PARTITION_SCHEMA
from dc2flow.render import render_sensor
from dc2flow.synthetic import make_catalog

DET = "R22_S11"
RA0, DEC0, ROT = 60.0, -35.0, 37.0
# (x, y, magnorm): bright isolated stars, FFT-drawn (mag 16, 17) and photon-shot (mag 21.5)
STARS = [(600.3, 700.8, 16.0), (1600.6, 2900.1, 17.0), (3100.2, 1200.5, 16.0), (3500.9, 3300.4, 17.0),
         (900.5, 3400.2, 21.5), (2500.0, 600.0, 21.5), (2048.7, 2002.2, 19.0)]


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("scene")
    x, y, mag = (np.array(c) for c in zip(*STARS))
    ra, dec = pixel_to_sky(DET, RA0, DEC0, ROT, x, y)
    cat = make_catalog(outdir=tmp / "cat", visit=77, ra_deg=RA0, dec_deg=DEC0, band="r", seed=5,
                       rotskypos_deg=ROT, radius_deg=0.2, star_density=0.0, galaxy_density=300.0,
                       bright_stars=list(zip(ra, dec, mag)))
    return run_stages(tmp / "run", cat, [DET])


def _centroid_and_flux(data, sky, x, y, radius):
    """First moments and summed flux above the sky in a circular aperture (1-based x, y)."""
    x, y = float(x), float(y)
    x0, y0 = int(round(x)), int(round(y))
    ys, xs = np.mgrid[y0 - radius:y0 + radius + 1, x0 - radius:x0 + radius + 1].astype(float)
    d = data[y0 - radius - 1:y0 + radius, x0 - radius - 1:x0 + radius].astype(float) - sky
    inside = (xs - x) ** 2 + (ys - y) ** 2 <= radius**2
    w = d * inside
    return (w * xs).sum() / w.sum(), (w * ys).sum() / w.sum(), w.sum()


def test_stars_land_where_the_wcs_puts_them(scene):
    with fits.open(scene["images"][DET]) as hdul:
        data, header = hdul[0].data, hdul[0].header
    wcs = WCS(header)
    truth = pd.read_csv(scene["truth"][DET], sep="\t")
    stars = truth[truth["id"].astype(str).str.len() >= 16]   # the marker stars (ids from 10**15)
    assert len(stars) == len(STARS)
    for row in stars.itertuples():
        x, y = wcs.all_world2pix(row.ra_deg, row.dec_deg, 1)
        # faint photon-shot stars (mag 21.5, ~5,000 photons on ~1,000 e-/px of sky) get a tighter aperture
        radius = 12 if row.method == "fft" else 6
        cx, cy, _ = _centroid_and_flux(data, header["SKYLEVEL"], x, y, radius=radius)
        assert abs(cx - x) < 0.3 and abs(cy - y) < 0.3, (row.id, row.method, cx - x, cy - y)
    assert set(stars["method"]) == {"fft", "phot"}


def test_one_magnitude_is_a_factor_2_512(scene):
    with fits.open(scene["images"][DET]) as hdul:
        data, header = hdul[0].data, hdul[0].header
    WCS(header)  # the header reads as a WCS
    flux = {}
    for (x, y, mag) in STARS[:4]:
        cx, cy, f = _centroid_and_flux(data, header["SKYLEVEL"], x, y, radius=25)
        flux.setdefault(mag, []).append(f)
    ratio = np.mean(flux[16.0]) / np.mean(flux[17.0])
    assert ratio == pytest.approx(10**0.4, rel=0.03)


def test_header_wcs_and_provenance(scene):
    with fits.open(scene["images"][DET], checksum=True) as hdul:
        h = hdul[0].header
        assert hdul[0].data.dtype == np.dtype(">f4") and hdul[0].data.shape == (4004, 4096)
        assert hdul[0].verify_checksum() == 1 and hdul[0].verify_datasum() == 1
    for key in ("EXPTIME", "DET_NAME", "MJD-OBS", "FILTER", "RATEL", "DECTEL", "ROTANGLE", "AIRMASS", "SEEING",
                "OBSID", "DC2FLOW", "GALSIM", "CFGHASH", "SEED", "CONTAINR"):
        assert key in h, key
    assert (h["DET_NAME"], h["OBSID"], h["FILTER"], h["DET_NUM"]) == (DET, 77, "r", 94)
    assert h["CTYPE1"] == "RA---TAN-SIP" and h["A_ORDER"] == 3 and h["AP_ORDER"] == 3
    # R22_S11's centre (DM pixel 2047.5, 2001.5, written as imSim does into the 1-based image) is the
    # optical axis, where the light of the boresight (RATEL, DECTEL: fieldRA, fieldDec) lands
    centre = WCS(h).all_pix2world([[2047.5, 2001.5]], 1)[0]
    offset = 3600 * np.hypot((centre[0] - RA0) * np.cos(np.radians(DEC0)), centre[1] - DEC0)
    assert offset < 0.01                                        # arcsec; 1 px is 0.2
    # +y of the sensor is where rotSkyPos puts it: PA 270 - rotskypos (imSim's orientation)
    up = WCS(h).all_pix2world([[2047.5, 2101.5]], 1)[0]
    pa = np.degrees(np.arctan2((up[0] - centre[0]) * np.cos(np.radians(DEC0)), up[1] - centre[1])) % 360
    assert abs((pa - (270.0 - ROT)) % 360.0) < 0.5 or abs((pa - (270.0 - ROT)) % 360.0) > 359.5


def test_sky_level_and_noise(scene):
    with fits.open(scene["images"][DET]) as hdul:
        data, sky = hdul[0].data, hdul[0].header["SKYLEVEL"]
    corner = data[3700:3990, 50:340].astype(float)
    assert np.median(corner) == pytest.approx(sky, rel=0.02)
    assert np.std(corner[corner < sky + 5 * np.sqrt(sky)]) == pytest.approx(np.sqrt(sky), rel=0.1)
    assert np.all(data == np.round(data))  # Poisson counts


def _pixels_sha(path):
    with fits.open(path) as hdul:
        return hashlib.sha256(np.ascontiguousarray(hdul[0].data).tobytes()).hexdigest()


def test_deterministic_whatever_the_row_order(scene, tmp_path):
    visit = scene["visit"]
    again, shuffled = tmp_path / "again.fits", tmp_path / "shuffled.fits"
    render_sensor(visit, scene["partitions"][DET], DET, scene["options"], again, tmp_path / "a.txt.gz")
    table = pq.read_table(scene["partitions"][DET]).to_pandas().sample(frac=1.0, random_state=3)
    pq.write_table(pa.Table.from_pandas(table, schema=PARTITION_SCHEMA, preserve_index=False), tmp_path / "s.parquet")
    render_sensor(visit, tmp_path / "s.parquet", DET, scene["options"], shuffled, tmp_path / "s.txt.gz",
                  wcs_path=Path(scene["partitions"][DET]).parent / "wcs.json")
    assert _pixels_sha(again) == _pixels_sha(scene["images"][DET]) == _pixels_sha(shuffled)


def test_noiseless_image_is_sky_plus_expected_flux(scene, tmp_path):
    opts = {**scene["options"], "render": {**scene["options"]["render"], "noise": False, "fft_flux_threshold": 0.0}}
    out = tmp_path / "clean.fits"
    render_sensor(scene["visit"], scene["partitions"][DET], DET, opts, out, tmp_path / "c.txt.gz")
    with fits.open(out) as hdul:
        data, sky = hdul[0].data.astype(float), hdul[0].header["SKYLEVEL"]
    truth = pd.read_csv(tmp_path / "c.txt.gz", sep="\t")
    assert (truth["method"] == "fft").all()
    assert data.sum() - sky * data.size == pytest.approx(truth["flux_drawn"].sum(), rel=1e-4)
    inner = truth[(truth.x > 60) & (truth.x < 4036) & (truth.y > 60) & (truth.y < 3944)]
    np.testing.assert_allclose(inner["flux_drawn"], inner["flux"], rtol=0.02)


def test_unreadable_partition_is_a_clear_error(scene, tmp_path):
    from dc2flow.errors import RenderError

    bad = tmp_path / "bad.parquet"
    bad.write_text("not parquet")
    out = tmp_path / "x.fits"
    with pytest.raises(RenderError, match="bad.parquet: cannot read the partition.*rerun the partition_visit"):
        render_sensor(scene["visit"], bad, DET, scene["options"], out, tmp_path / "x.txt.gz",
                      wcs_path=Path(scene["partitions"][DET]).parent / "wcs.json")
    assert not out.exists() and not list(tmp_path.glob(".*tmp*"))


def test_render_job_does_not_import_pandas(scene, tmp_path):
    """A render job needs neither pandas nor pyarrow.dataset: importing them cost ~0.5 s and ~70 MB
    of every job's peak memory (the partition, the bandpass file and the columns are read without)."""
    import subprocess
    import sys

    visit_json = tmp_path / "visit.json"
    scene["visit"].write_json(visit_json)
    code = ("import sys; from dc2flow.cli import main; main(sys.argv[1:]); "
            "print(sorted(m for m in ('pandas', 'pyarrow.dataset') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, "render", str(visit_json), scene["partitions"][DET],
                          "--det-name", DET, "--out", str(tmp_path / "x.fits"), "--truth", str(tmp_path / "x.txt.gz")],
                         check=True, capture_output=True, text=True).stdout
    assert out.strip().splitlines()[-1] == "[]"
    assert _pixels_sha(tmp_path / "x.fits") == _pixels_sha(scene["images"][DET])
