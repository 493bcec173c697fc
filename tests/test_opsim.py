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


def _config(snaps="[1]", extra=()):
    return ["--config", f"opsim_db={DB}", "visits=[449053]", f"snaps={snaps}", f"sky_catalog={SKY / 'sky_cat_9683.yaml'}",
            f"sky_catalog_root={SKY}", 'sensors=["R22_S11"]', "outdir=out", *extra]


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
def test_workflow_renders_snap_1_of_opsim_visit_449053(tmp_path):
    """The issue's command: R22_S11 of OpSim visit 449053, snap 1, objects from imSim's skyCatalog."""
    import gzip

    from astropy.io import fits

    _snakemake(tmp_path, "--cores", "2", *_config())
    out = tmp_path / "out"
    image = out / "00449053" / "eimage_00449053-1-r-R22_S11-det094.fits"
    truth = out / "00449053" / "centroid_00449053-1-r-R22_S11-det094.txt.gz"
    assert image.exists() and truth.exists()
    imsim = fits.getheader(EIMAGE)
    with fits.open(image, checksum=True) as hdul:
        h = hdul[0].header
        assert hdul[0].verify_checksum() == 1
    assert (h["OBSID"], h["FILTER"], h["SEQNUM"], h["EXPTIME"]) == (449053, "r", imsim["SEQNUM"], 15.0)
    assert h["MJD"] == pytest.approx(imsim["MJD"], abs=1e-9)  # the middle of snap 1, TAI
    assert h["MJD-OBS"] == pytest.approx(imsim["MJD-OBS"], abs=1e-9)  # the visit's start, as imSim writes it
    # the same OpSim visit gives the same sky: the workflow's header WCS against imSim's, 9 x 9 grid
    import galsim
    import numpy as np

    ours, theirs = galsim.GSFitsWCS(header=dict(h)), galsim.GSFitsWCS(header=dict(imsim))
    gx, gy = (a.ravel() for a in np.meshgrid(np.linspace(0, 4095, 9), np.linspace(0, 4003, 9)))
    x, y = ours.radecToxy(*theirs.xyToradec(gx, gy, units="rad"), units="rad")
    assert np.hypot(x - gx, y - gy).max() < 0.05
    row = _row(449053)
    assert (h["SKYBRT"], h["M5OPSIM"], h["FWHMGEOM"]) == pytest.approx(
        (row["skyBrightness"], row["fiveSigmaDepth"], row["seeingFwhmGeom"]))
    assert [h[f"CATFIL{i}"] for i in range(3)] == ["small_opsim_9683.db", "sky_cat_9683.yaml",
                                                   "pointsource_9683_449053_det94.parquet"]
    with gzip.open(truth, "rt") as fh:
        n_truth = sum(1 for _ in fh) - 1
    assert n_truth == h["NOBJECTS"] > 150  # 216 of the 683 stars fall on R22_S11 by imSim's WCS
    sources = json.loads((out / "catalog" / "00449053" / "sources.json").read_text())
    assert sources["snap"] == 1 and sources["skips"].startswith("683 stars and 0 galaxies")
    visit = Visit.read_json(out / "catalog" / "00449053" / "visit.json")
    assert visit == opsim.read_visit(DB, 449053, 1)
    summary = (out / "validation" / "00449053" / "summary.tsv").read_text().splitlines()
    assert len(summary) == 2 and "\tok\t" in summary[1]
    assert (out / "registry" / "records" / "00449053" / "r-R22_S11-det094.json").exists()


@pytest.mark.parametrize("snaps, message", [
    ("[0,1]", "a run renders one snap of its visits"),
    ("[2]", "snap 2 of visit 449053 does not exist"),
])
def test_workflow_refuses_two_snaps_and_a_missing_snap(tmp_path, snaps, message):
    proc = _snakemake(tmp_path, "-n", *_config(snaps), check=False)
    assert proc.returncode != 0 and message in proc.stdout + proc.stderr


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
    assert list(entries) == [449027, 449053]
    e = entries[449053]
    assert (e.band, e.snap, e.kind, e.catalog) == ("r", 1, "opsim", str(DB))
    assert campaign.image_name(449053, e.band, "R22_S11", e.snap) == "eimage_00449053-1-r-R22_S11-det094.fits"


def test_visit_regex_splits_the_two_rules(tiny_catalog):
    import re

    from dc2flow import campaign

    entries = campaign.config_visits(_cfg(catalogs=[str(tiny_catalog)], opsim_db=str(DB), visits=[449053]))
    inst, ops = campaign.visit_regex(entries, "instcat"), campaign.visit_regex(entries, "opsim")
    for visit, kind in ((1001, "instcat"), (449053, "opsim")):
        path = f"out/catalog/{visit:08d}/visit.json"
        assert bool(re.fullmatch(rf"out/catalog/({inst})/visit\.json", path)) == (kind == "instcat")
        assert bool(re.fullmatch(rf"out/catalog/({ops})/visit\.json", path)) == (kind == "opsim")
    only = campaign.config_visits(_cfg(opsim_db=str(DB), visits=[449053]))
    assert campaign.visit_regex(only, "opsim") == r"\d{8}"
    assert not re.fullmatch(campaign.visit_regex(only, "instcat"), "00449053")


@pytest.mark.parametrize("cfg, key, message", [
    (dict(visits=[449053]), "visits", "OpSim visits need opsim_db"),
    (dict(opsim_db=str(DB)), "opsim_db", "given without visits"),
    (dict(sky_catalog="x.yaml"), "sky_catalog", "set opsim_db and visits too"),
    (dict(opsim_db=str(DB), visits=[449053], snaps=[0, 1]), "snaps", "one snap of its visits"),
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
