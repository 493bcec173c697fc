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


def test_missing_table_and_column(tmp_path):
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).execute("create table other (a int)").connection.commit()
    with pytest.raises(CatalogError, match="has no table 'observations'"):
        opsim.read_visit(empty, 449053)
    db = tmp_path / "nocol.db"
    shutil.copy(DB, db)
    con = sqlite3.connect(db)
    con.execute("alter table observations drop column seeingFwhm500")
    con.commit()
    con.close()
    with pytest.raises(CatalogError, match=r"no column 'seeingFwhm500' \(visit 449053\)") as info:
        opsim.read_visit(db, 449053)
    assert str(db) in str(info.value)


def test_null_value_is_named(tmp_path):
    db = tmp_path / "null.db"
    shutil.copy(DB, db)
    con = sqlite3.connect(db)
    con.execute("update observations set altitude = NULL where observationId = 449053")
    con.commit()
    con.close()
    with pytest.raises(CatalogError, match="column 'altitude' of visit 449053 is not a finite number"):
        opsim.read_visit(db, 449053)
