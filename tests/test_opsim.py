"""OpSim visits: the row of visit 449053 of imSim's small OpSim database as a Visit, as imSim reads it."""

from __future__ import annotations

import json
import shutil
import sqlite3

import pytest

from conftest import SHARED
from dc2flow import opsim
from dc2flow.catalog import Visit
from dc2flow.errors import CatalogError

DB = SHARED / "skycat_449053" / "small_opsim_9683.db"
EIMAGE = SHARED / "eimage_00449053-1-r-R22_S11-det094.fits.gz"


def _row(visit):
    con = sqlite3.connect(f"file:{DB}?mode=ro", uri=True)
    con.row_factory = sqlite3.Row
    try:
        return dict(con.execute("select * from observations where observationId = ?", (visit,)).fetchone())
    finally:
        con.close()


def test_visit_449053_maps_the_row_as_imsim():
    v = opsim.read_visit(DB, 449053, snap=1)
    row = _row(449053)
    assert (v.visit, v.band, v.filter, v.seed, v.snap, v.nsnap) == (449053, "r", 2, 449053, 1, 2)
    assert v.source_kind == "opsim"
    assert v.ra_deg == row["fieldRA"] and v.dec_deg == row["fieldDec"]
    assert v.rotskypos_deg == pytest.approx(111.640693622012) and v.rottelpos_deg == pytest.approx(24.3157942276737)
    assert v.seeing_arcsec == row["seeingFwhm500"] and v.seeing_fwhm_geom_arcsec == row["seeingFwhmGeom"]
    assert v.sky_brightness_mag == row["skyBrightness"] and v.five_sigma_depth == row["fiveSigmaDepth"]
    assert v.airmass_opsim == row["airmass"] and v.para_angle_deg == row["paraAngle"]
    assert v.observation_start_mjd == row["observationStartMJD"]
    assert v.exptime_s == 15.0  # 30 s visit, two snaps
    assert (v.moon_ra_deg, v.moon_dec_deg, v.moon_alt_deg, v.moon_phase, v.dist2moon_deg, v.sun_alt_deg) == (
        row["moonRA"], row["moonDec"], row["moonAlt"], row["moonPhase"], row["moonDistance"], row["sunAlt"])
    assert (v.altitude_deg, v.azimuth_deg) == (row["altitude"], row["azimuth"])


def test_mid_snap_time_and_seqnum_equal_imsims_eimage():
    """imSim's eimage of snap 1 holds MJD (the middle of the snap, TAI) and SEQNUM: ours are the same."""
    from astropy.io import fits

    header = fits.getheader(EIMAGE)
    v = opsim.read_visit(DB, 449053, snap=1)
    assert v.mjd == pytest.approx(header["MJD"], abs=1e-9)  # 86 us
    assert v.seqnum == header["SEQNUM"] == 3
    # the formula by hand: 30 s in 2 snaps, visitTime 34 s -> 2 s readout per snap; snap 0 is 8.5 s earlier
    v0 = opsim.read_visit(DB, 449053, snap=0)
    assert (v.mjd - v0.mjd) * 86400 == pytest.approx(17.0, abs=1e-4)
    assert (v0.mjd - v0.observation_start_mjd) * 86400 == pytest.approx(7.5, abs=1e-4)
    assert v0.seqnum == 2


def test_visit_round_trips_through_json(tmp_path):
    v = opsim.read_visit(DB, 449053, snap=1)
    v.write_json(tmp_path / "visit.json")
    assert Visit.read_json(tmp_path / "visit.json") == v
    # an instance-catalog record written before these fields existed still reads, with their defaults
    old = {k: val for k, val in v.to_dict().items() if k not in (
        "snap", "seeing_fwhm_geom_arcsec", "sky_brightness_mag", "five_sigma_depth", "observation_start_mjd",
        "airmass_opsim", "para_angle_deg", "source_kind")}
    (tmp_path / "old.json").write_text(json.dumps(old))
    back = Visit.read_json(tmp_path / "old.json")
    assert back.snap == 0 and back.source_kind == "instcat" and back.seeing_fwhm_geom_arcsec is None


def test_visit_ids():
    ids = opsim.visit_ids(DB)
    assert len(ids) == 73 and 449053 in ids and ids == sorted(ids)


@pytest.mark.parametrize("visit, snap, message", [
    (449054, 0, "no row with observationId 449054"),
    (449053, 2, "snap 2 of visit 449053 does not exist"),
    (449053, -1, "snap -1 of visit 449053 does not exist"),
])
def test_bad_visit_or_snap(visit, snap, message):
    with pytest.raises(CatalogError, match=message) as info:
        opsim.read_visit(DB, visit, snap)
    assert str(DB) in str(info.value)


def test_missing_file_and_not_sqlite(tmp_path):
    with pytest.raises(CatalogError, match="OpSim database not found"):
        opsim.read_visit(tmp_path / "none.db", 1)
    text = tmp_path / "text.db"
    text.write_text("rightascension 1\n")
    with pytest.raises(CatalogError, match="not an SQLite file"):
        opsim.read_visit(text, 1)


def _edited_copy(tmp_path, name, sql):
    """A copy of the shared OpSim database with one SQL statement applied."""
    db = tmp_path / name
    shutil.copy(DB, db)
    con = sqlite3.connect(db)
    con.execute(sql)
    con.commit()
    con.close()
    return db


def test_missing_table_and_column(tmp_path):
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).execute("create table other (a int)").connection.commit()
    with pytest.raises(CatalogError, match="has no table 'observations'"):
        opsim.read_visit(empty, 449053)
    db = _edited_copy(tmp_path, "nocol.db", "alter table observations drop column seeingFwhm500")
    with pytest.raises(CatalogError, match=r"no column 'seeingFwhm500' \(visit 449053\)") as info:
        opsim.read_visit(db, 449053)
    assert str(db) in str(info.value)


def test_null_value_is_named(tmp_path):
    db = _edited_copy(tmp_path, "null.db", "update observations set altitude = NULL where observationId = 449053")
    with pytest.raises(CatalogError, match="column 'altitude' of visit 449053 is not a finite number"):
        opsim.read_visit(db, 449053)


# --- the workflow: OpSim visits and a sky catalog instead of instance catalogs -------------------

SKY = SHARED / "skycat_449053"


def _config(snaps="[1]", extra=(), outdir="out"):
    return ["--config", f"opsim_db={DB}", "visits=[449053]", f"snaps={snaps}", f"sky_catalog={SKY / 'sky_cat_9683.yaml'}",
            f"sky_catalog_root={SKY}", 'sensors=["R22_S11"]', f"outdir={outdir}", *extra]


def _snakemake(workdir, *args, check=True):
    import os
    import subprocess
    import sys

    from conftest import REPO

    env = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


@pytest.mark.slow
def test_workflow_renders_both_snaps_of_opsim_visit_449053(tmp_path):
    """The issue's command with snaps [0, 1]: R22_S11 of OpSim visit 449053, both snaps in one run,
    objects from imSim's skyCatalog; snap 0 as a run of snap 0 alone makes it, snap 1 as imSim's eimage."""
    import gzip
    import sqlite3

    import galsim
    import numpy as np
    from astropy.io import fits

    # the registry's targets: every stage but the mosaics and the resource figure (tests/test_workflow.py)
    _snakemake(tmp_path, "--cores", "2", "out/registry/visits/00449053.tsv", "out/registry/visits/00449053-1.tsv",
               *_config("[0,1]"))
    out = tmp_path / "out"
    image, truth = ({s: out / "00449053" / f"{kind}_00449053-{s}-r-R22_S11-det094.{ext}" for s in (0, 1)}
                    for kind, ext in (("eimage", "fits"), ("centroid", "txt.gz")))
    assert all(p.exists() for p in (*image.values(), *truth.values()))
    assert sorted(p.name for p in (out / "00449053").iterdir()) == sorted(p.name for p in (*image.values(), *truth.values()))
    imsim = fits.getheader(EIMAGE)
    headers, pixels = {}, {}
    for s in (0, 1):
        with fits.open(image[s], checksum=True) as hdul:
            headers[s], pixels[s] = hdul[0].header, hdul[0].data.copy()
            assert hdul[0].verify_checksum() == 1
    h = headers[1]
    assert (h["OBSID"], h["FILTER"], h["SEQNUM"], h["EXPTIME"], h["SNAP"]) == (449053, "r", imsim["SEQNUM"], 15.0, 1)
    assert h["MJD"] == pytest.approx(imsim["MJD"], abs=1e-9)  # the middle of snap 1, TAI
    assert h["MJD-OBS"] == pytest.approx(imsim["MJD-OBS"], abs=1e-9)  # the visit's start, as imSim writes it
    # snap 0: 17 s earlier (15 s exposure, 2 s readout), the sequence number before, its own WCS
    h0 = headers[0]
    assert (h0["SNAP"], h0["SEQNUM"], h0["MJD-OBS"]) == (0, h["SEQNUM"] - 1, h["MJD-OBS"])
    assert (h["MJD"] - h0["MJD"]) * 86400 == pytest.approx(17.0, abs=1e-3)
    assert (h0["CRVAL1"], h0["CRVAL2"], h0["CD1_1"]) != (h["CRVAL1"], h["CRVAL2"], h["CD1_1"])
    # the same OpSim visit gives the same sky: the workflow's header WCS of snap 1 against imSim's, 9 x 9 grid
    gx, gy = (a.ravel() for a in np.meshgrid(np.linspace(0, 4095, 9), np.linspace(0, 4003, 9)))
    ours, theirs = galsim.GSFitsWCS(header=dict(h)), galsim.GSFitsWCS(header=dict(imsim))
    x, y = ours.radecToxy(*theirs.xyToradec(gx, gy, units="rad"), units="rad")
    assert np.hypot(x - gx, y - gy).max() < 0.05
    # snap 0's WCS differs from snap 1's by the sky's motion over 17 s: a pixel or two
    x0, y0 = galsim.GSFitsWCS(header=dict(h0)).radecToxy(*ours.xyToradec(gx, gy, units="rad"), units="rad")
    assert 0.1 < np.hypot(x0 - gx, y0 - gy).max() < 5.0   # 2.3 px at the corners, measured
    # independent noise: other seeds, and pixels that differ by about the noise (sky ~400 e-)
    assert h0["SEED"] != h["SEED"]
    diff = pixels[1].astype(np.float64) - pixels[0]
    assert np.median(np.abs(diff)) > 10 and abs(np.median(diff)) < 2
    row = _row(449053)
    assert (h["SKYBRT"], h["M5OPSIM"], h["FWHMGEOM"]) == pytest.approx(
        (row["skyBrightness"], row["fiveSigmaDepth"], row["seeingFwhmGeom"]))
    assert [h[f"CATFIL{i}"] for i in range(3)] == ["small_opsim_9683.db", "sky_cat_9683.yaml",
                                                   "pointsource_9683_449053_det94.parquet"]
    with gzip.open(truth[1], "rt") as fh:
        n_truth = sum(1 for _ in fh) - 1
    assert n_truth == h["NOBJECTS"] > 150  # 216 of the 683 stars fall on R22_S11 by imSim's WCS
    # the stage files of each exposure under its key: 00449053 (snap 0), 00449053-1 (snap 1)
    for s, key in ((0, "00449053"), (1, "00449053-1")):
        sources = json.loads((out / "catalog" / key / "sources.json").read_text())
        assert sources["snap"] == s and sources["skips"].startswith("683 stars and 0 galaxies")
        assert Visit.read_json(out / "catalog" / key / "visit.json") == opsim.read_visit(DB, 449053, s)
        summary = (out / "validation" / key / "summary.tsv").read_text().splitlines()
        assert len(summary) == 2 and summary[1].startswith(f"449053\t{s}\tR22_S11\t") and "\tok\t" in summary[1]
        assert (out / "registry" / "records" / key / "r-R22_S11-det094.json").exists()
        assert (out / "partitions" / key / "index.tsv").exists() and (out / "estimates" / f"{key}.tsv").exists()
    plan = (out / "bundles" / "campaign.csv").read_text().splitlines()
    assert plan[0].startswith("bundle,visit,snap,det_name") and sorted(r.split(",")[2] for r in plan[1:]) == ["0", "1"]
    con = sqlite3.connect(out / "registry.sqlite")
    rows = con.execute("select visit, snap, det_name, path, seed from images order by snap").fetchall()
    con.close()
    assert [r[:4] for r in rows] == [(449053, s, "R22_S11", f"00449053/{image[s].name}") for s in (0, 1)]
    assert [r[4] for r in rows] == [h0["SEED"], h["SEED"]]
    # snap 0 of this run is snap 0 of a run of snap 0 alone, pixel for pixel
    _snakemake(tmp_path, "--cores", "2", f"alone/00449053/{image[0].name}", *_config("[0]", outdir="alone"))
    alone = fits.getdata(tmp_path / "alone" / "00449053" / image[0].name)
    assert alone.tobytes() == pixels[0].tobytes()
    assert fits.getheader(tmp_path / "alone" / "00449053" / image[0].name)["SEED"] == h0["SEED"]


def test_dry_run_lists_the_jobs_of_both_snaps(tmp_path):
    import re

    proc = _snakemake(tmp_path, "-n", "-p", *_config("[0,1]"))
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", proc.stdout, re.M))
    assert {r: counts.get(r) for r in ("opsim_visit", "partition_visit", "estimate_visit", "render_sensor",
                                       "render_sensor_snap1", "validate_visit", "mosaic_visit", "register_visit",
                                       "bundle_campaign")} == {
        "opsim_visit": "2", "partition_visit": "2", "estimate_visit": "2", "render_sensor": "1",
        "render_sensor_snap1": "1", "validate_visit": "2", "mosaic_visit": "2", "register_visit": "2",
        "bundle_campaign": "1"}
    for path in ("out/catalog/00449053/visit.json", "out/catalog/00449053-1/visit.json",
                 "out/partitions/00449053-1/index.tsv", "out/estimates/00449053-1.tsv",
                 "out/00449053/eimage_00449053-0-r-R22_S11-det094.fits", "out/00449053/eimage_00449053-1-r-R22_S11-det094.fits",
                 "out/validation/00449053-1/summary.tsv", "out/registry/visits/00449053-1.tsv"):
        assert path in proc.stdout, path
    assert re.search(r"opsim-visit \S+ --visit 449053 --snap 1 .*out/catalog/00449053-1/visit\.json", proc.stdout)
    assert re.search(r"opsim-visit \S+ --visit 449053 --snap 0 .*out/catalog/00449053/visit\.json", proc.stdout)
    assert "--visits 00449053,00449053-1 " in proc.stdout   # the bundle step reads both exposures' estimates
    assert not re.search(r"00449053-0(?![-\d])", proc.stdout)   # snap 0 keeps the plain 8-digit key (images: -0-)


@pytest.mark.parametrize("snaps, message", [
    ("[0,2]", "snap 2 of visit 449053 does not exist"),
    ("[0,0]", "snaps"),
])
def test_workflow_refuses_a_missing_or_repeated_snap(tmp_path, snaps, message):
    proc = _snakemake(tmp_path, "-n", *_config(snaps), check=False)
    assert proc.returncode != 0 and message in proc.stdout + proc.stderr


def test_each_snap_has_its_own_noise_and_photons_but_the_same_knots():
    from dc2flow.io import derive_seed
    from dc2flow.render import object_seed, sensor_seed

    v0, v1 = opsim.read_visit(DB, 449053, 0), opsim.read_visit(DB, 449053, 1)
    assert v0.seed == v1.seed == 449053                               # imSim's seed: the visit, every snap
    assert sensor_seed(v0, 94) == derive_seed("sensor", 449053, 449053, 94)   # snap 0: the seeds of before
    assert object_seed(v0, 5, "photons") == derive_seed("photons", 449053, 449053, 5)
    assert sensor_seed(v1, 94) != sensor_seed(v0, 94) and sensor_seed(v1, 94) != sensor_seed(v1, 93)
    assert object_seed(v1, 5, "photons") != object_seed(v0, 5, "photons")
    assert object_seed(v1, 5, "knots") == object_seed(v0, 5, "knots")  # the same galaxy in both snaps


# --- the CLI verb and the campaign's visit list --------------------------------------------------

def test_cli_opsim_visit_writes_the_three_files_of_parse(tmp_path):
    from dc2flow.catalog import OBJECT_SCHEMA, read_objects
    from dc2flow.cli import main

    out = {k: tmp_path / n for k, n in (("visit", "visit.json"), ("objects", "objects.parquet"),
                                        ("sources", "sources.json"))}
    args = ["opsim-visit", str(DB), "--visit", "449053", "--snap", "1", "--sky-catalog", str(SKY / "sky_cat_9683.yaml"),
            "--sky-catalog-root", str(SKY), "--visit-json", str(out["visit"]), "--objects", str(out["objects"]),
            "--sources", str(out["sources"])]
    assert main(args) == 0
    assert Visit.read_json(out["visit"]) == opsim.read_visit(DB, 449053, 1)
    assert len(read_objects(out["objects"])) == 683
    sources = json.loads(out["sources"].read_text())
    assert [f for f, _ in sources["files"]] == [str(DB), str(SKY / "sky_cat_9683.yaml"),
                                                str(SKY / "pointsource_9683_449053_det94.parquet")]
    assert all(len(digest) == 64 for _, digest in sources["files"])
    # without a sky catalog: an empty object table of the same schema
    empty = tmp_path / "empty.parquet"
    assert main([*args[:6], "--visit-json", str(out["visit"]), "--objects", str(empty),
                 "--sources", str(out["sources"])]) == 0
    import pyarrow.parquet as pq

    assert pq.read_table(empty).num_rows == 0 and pq.read_schema(empty).equals(OBJECT_SCHEMA, check_metadata=False)
    # an error: exit 1, no new output
    (tmp_path / "x").mkdir()
    assert main(["opsim-visit", str(DB), "--visit", "1", "--visit-json", str(tmp_path / "x" / "v.json"),
                 "--objects", str(tmp_path / "x" / "o.parquet"), "--sources", str(tmp_path / "x" / "s.json")]) == 1
    assert list((tmp_path / "x").iterdir()) == []


def _cfg(**kw):
    base = {"catalogs": [], "opsim_db": None, "visits": [], "snaps": [0], "sky_catalog": None}
    return {**base, **kw}


def test_config_visits_from_opsim():
    from dc2flow import campaign

    entries = campaign.config_visits(_cfg(opsim_db=str(DB), visits=["449053", 449027], snaps=["1"]))
    assert list(entries) == [(449027, 1), (449053, 1)]
    e = entries[campaign.Exposure(449053, 1)]
    assert (e.band, e.snap, e.kind, e.catalog, e.key) == ("r", 1, "opsim", str(DB), "00449053-1")
    assert campaign.image_name(449053, e.band, "R22_S11", e.snap) == "eimage_00449053-1-r-R22_S11-det094.fits"
    both = campaign.config_visits(_cfg(opsim_db=str(DB), visits=[449053], snaps=[1, 0]))
    assert [e.key for e in both.values()] == ["00449053", "00449053-1"] and list(both) == [(449053, 0), (449053, 1)]
    with pytest.raises(CatalogError, match="snap 2 of visit 449053 does not exist"):   # numExposures 2
        campaign.config_visits(_cfg(opsim_db=str(DB), visits=[449053], snaps=[0, 2]))


def test_visit_regex_splits_the_two_rules(tiny_catalog):
    import re

    from dc2flow import campaign

    entries = campaign.config_visits(_cfg(catalogs=[str(tiny_catalog)], opsim_db=str(DB), visits=[449053]))
    inst, ops = campaign.visit_regex(entries, "instcat"), campaign.visit_regex(entries, "opsim")
    for visit, kind in ((1001, "instcat"), (449053, "opsim")):
        path = f"out/catalog/{visit:08d}/visit.json"
        assert bool(re.fullmatch(rf"out/catalog/({inst})/visit\.json", path)) == (kind == "instcat")
        assert bool(re.fullmatch(rf"out/catalog/({ops})/visit\.json", path)) == (kind == "opsim")
    only = campaign.config_visits(_cfg(opsim_db=str(DB), visits=[449053], snaps=[0, 1]))
    assert campaign.visit_regex(only, "opsim") == campaign.EXPOSURE_KEY_REGEX
    assert not any(re.fullmatch(campaign.visit_regex(only, "instcat"), k) for k in ("00449053", "00449053-1"))
    # mixed: the lookahead excludes the other kind's keys, and 00449053 does not exclude 00449053-1
    mixed = {campaign.Exposure(449053, 0): campaign.VisitEntry(449053, "r", "a.txt"),
             campaign.Exposure(449053, 1): campaign.VisitEntry(449053, "r", "db", 1, "opsim")}
    inst, ops = campaign.visit_regex(mixed, "instcat"), campaign.visit_regex(mixed, "opsim")
    for key, kind in (("00449053", "instcat"), ("00449053-1", "opsim")):
        path = f"out/catalog/{key}/visit.json"
        assert bool(re.fullmatch(rf"out/catalog/({inst})/visit\.json", path)) == (kind == "instcat")
        assert bool(re.fullmatch(rf"out/catalog/({ops})/visit\.json", path)) == (kind == "opsim")


@pytest.mark.parametrize("cfg, key, message", [
    (dict(visits=[449053]), "visits", "OpSim visits need opsim_db"),
    (dict(opsim_db=str(DB)), "opsim_db", "given without visits"),
    (dict(sky_catalog="x.yaml"), "sky_catalog", "set opsim_db and visits too"),
    (dict(opsim_db=str(DB), visits=[449053], snaps=[1, 1]), "snaps", "distinct integers"),
    (dict(catalogs=["a.txt"], opsim_db=str(DB), visits=[449053], snaps=[0, 1]), "snaps", "instance catalogs are snap 0"),
    (dict(catalogs=["a.txt"], snaps=[1]), "snaps", "instance catalogs are snap 0"),
    (dict(opsim_db=str(DB), visits=[449053, 449053]), "visits", "listed twice"),
])
def test_config_visits_errors(cfg, key, message):
    from dc2flow import campaign
    from dc2flow.errors import ConfigError

    with pytest.raises(ConfigError, match=message) as info:
        campaign.config_visits(_cfg(**cfg))
    assert info.value.key == key


def test_config_schema_takes_the_new_keys():
    from dc2flow import config
    from dc2flow.errors import ConfigError

    cfg = config.load(overrides={"opsim_db": str(DB), "visits": [449053], "snaps": [1], "sky_catalog": "s.yaml",
                                 "sky_catalog_root": "d", "sky_catalog_radius_deg": 1.5})
    assert cfg["snaps"] == [1] and cfg["sky_catalog_radius_deg"] == 1.5
    assert config.load()["snaps"] == [0] and config.load()["opsim_db"] is None
    with pytest.raises(ConfigError, match="sky_catalog_radius_deg"):
        config.load(overrides={"sky_catalog_radius_deg": 0})
    with pytest.raises(ConfigError, match="snaps"):
        config.load(overrides={"snaps": [10]})
