"""Tests of dc2flow.catalog: the instance catalog reader."""

from __future__ import annotations

import gzip
import logging
import math
import os
import pickle
import time
import warnings
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from dc2flow.catalog import (
    BANDS, OBJECT_SCHEMA, OPTIONAL_DEFAULTS, REQUIRED_KEYS, SkipCounts, Visit,
    iter_objects, read_catalog, read_header, read_objects,
)
from dc2flow.errors import CatalogError, ConfigError, Dc2flowWarning
from dc2flow.catalog import ROTATION_KEYS

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "imsim"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared imSim data not found at {SHARED}")

# A complete header (every required and optional key), so synthetic catalogs raise no warnings.
HEADER = {
    "rightascension": "31.1133844", "declination": "-10.0970060", "mjd": "59797.2854090",
    "altitude": "43.6990272", "azimuth": "73.7707957", "filter": "2", "rotskypos": "69.0922930",
    "rottelpos": "1.000", "dist2moon": "145.1095257", "moonalt": "-11.1383568",
    "moondec": "-18.7702120", "moonphase": "59.6288830", "moonra": "230.9832941", "nsnap": "2",
    "seqnum": "0", "obshistid": "161899", "seed": "161899", "seeing": "0.7613760",
    "sunalt": "-59.1098785", "vistime": "33.0000000",
}
N_HEADER_LINES = len(HEADER)

POINT = "object {id} 31.24 -10.09 22.5 starSED/kurucz/km20_6000.fits_g20_6120.gz 0 0 0 0 0 0 point none CCM 0.06 3.1"
SERSIC = ("object {id} 31.13 -9.99 24.0 galaxySED/Exp.40E09.02Z.spec.gz 0.5 0.01 -0.02 0.03 0 0 "
          "sersic2d 0.58 0.44 2.7 1 CCM 0.1 3.0 CCM 0.05 3.1")
KNOTS = ("object {id} 31.13 -9.99 23.0 galaxySED/Exp.32E09.04Z.spec.gz 0.5 0 0 0 0 0 "
         "knots 0.41 0.26 74.2 23 CCM 0.2 3.1 CCM 0.05 3.1")


def header_text(**changes: str | None) -> str:
    """The header lines, with keys changed (or removed when the value is None)."""
    keys = {**HEADER, **changes}
    return "".join(f"{k} {v}\n" for k, v in keys.items() if v is not None)


def write_catalog(path: Path, *objects: str, header: str | None = None) -> Path:
    path.write_text((header_text() if header is None else header) + "".join(o + "\n" for o in objects))
    return path


def assert_no_output(out: Path) -> None:
    """Neither the output nor a temporary file is left in the output's directory."""
    assert not out.exists()
    assert not [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.tmp")]


# ---------------------------------------------------------------------------------------------
# Real imSim catalogs


@needs_shared
def test_example_catalog(tmp_path):
    out = tmp_path / "objects.parquet"
    visit, skips = read_catalog(SHARED / "example_instance_catalog.txt", out)
    assert (visit.visit, visit.band, visit.filter, visit.seqnum, visit.nsnap) == (398414, "r", 2, 0, 1)
    assert visit.ra_deg == pytest.approx(60.49045502638662697)
    assert visit.exptime_s == 30.0 and visit.extra == ()
    # awk '$1=="object"{print $13}' | sort | uniq -c -> 998 point, 1000 sersic2d; three sersic2d
    # lines (1494, 1582, 1634) have magnorm >= 50 and no line has a < b or an inf/nan token.
    assert skips == SkipCounts(n_read=1998, n_kept=1995, magnorm_ge_50=3)
    assert skips.summary() == "kept 1995 of 1998 objects; skipped 3: 3 magnorm>=50"
    df = read_objects(out)
    assert list(df.columns) == OBJECT_SCHEMA.names
    assert df.obj_type.value_counts().to_dict() == {"point": 998, "sersic2d": 997}
    assert not {1494, 1582, 1634} & set(df.line)
    assert (df.magnorm < 50).all() and (df.source == str(SHARED / "example_instance_catalog.txt")).all()
    first = df.iloc[0]
    assert (first.id, first.line, first.obj_type) == ("32166136206340", 21, "point")
    assert (first.internal_av, first.internal_rv, first.galactic_av, first.galactic_rv) == (0.0, 3.1, 0.01014165, 3.1)
    gal = df[df.obj_type == "sersic2d"]
    assert set(gal.sersic_n) == {1.0, 4.0} and (gal.major_arcsec >= gal.minor_arcsec).all()
    assert (df[df.obj_type == "point"][["major_arcsec", "sersic_n", "npoints"]] == 0).all().all()


@needs_shared
def test_example_catalog_chunks_give_same_table(tmp_path):
    read_catalog(SHARED / "example_instance_catalog.txt", tmp_path / "a.parquet")
    read_catalog(SHARED / "example_instance_catalog.txt", tmp_path / "b.parquet", chunk_rows=300)
    a, b = pq.read_table(tmp_path / "a.parquet"), pq.read_table(tmp_path / "b.parquet")
    assert a.equals(b) and pq.ParquetFile(tmp_path / "b.parquet").num_row_groups == 7


@needs_shared
def test_tiny_catalog(tmp_path, caplog):
    out = tmp_path / "objects.parquet"
    with caplog.at_level(logging.INFO, logger="dc2flow.catalog"):
        visit, skips = read_catalog(SHARED / "tiny_instcat.txt", out)
    assert (visit.visit, visit.band, visit.nsnap, visit.rottelpos_deg) == (161899, "r", 2, 1.0)
    # 24 object lines (the '# object donut_test' line is a comment): line 31 magnorm 1000,
    # line 42 sersic2d a < b, line 44 knots npoints 0, line 45 lensed_agn_disk.fits.gz.
    assert skips == SkipCounts(n_read=24, n_kept=20, magnorm_ge_50=1, a_lt_b=1, knots_npoints_le_0=1,
                               unsupported_type=1, unsupported_names=(("FITS image", 1),))
    summary = ("kept 20 of 24 objects; skipped 4: 1 magnorm>=50, 1 a<b, 1 knots npoints<=0, "
               "1 unsupported type (FITS image x1)")
    assert skips.summary() == summary
    assert [r.getMessage() for r in caplog.records] == [f"{SHARED / 'tiny_instcat.txt'}: {summary}"]
    df = read_objects(out)
    assert df.obj_type.value_counts().to_dict() == {"point": 9, "sersic2d": 10, "knots": 1}
    assert df.id.iloc[0] == "MS_567_8" and df.line.iloc[0] == 22
    assert "811883456516" in set(df.id)  # numeric-looking ids stay strings
    assert not {31, 42, 44, 45, 46} & set(df.line)
    assert "donut_test" not in set(df.id) and "lensed_host" not in set(df.id)
    knots = df[df.obj_type == "knots"].iloc[0]
    assert (knots.id, knots.npoints, knots.sersic_n, knots.major_arcsec) == ("34304522113055", 23, 0.0, 0.4129408)


@needs_shared
def test_bad_catalog(tmp_path):
    out = tmp_path / "objects.parquet"
    visit, skips = read_catalog(SHARED / "bad_instcat.txt", out)
    assert visit.visit == 161899
    # The tiny catalog's 24 objects (with the same four skips), plus two lines with an 'inf'
    # token (48, 49) and two valid MS_inf_8 lines (52, and 54 whose SED name contains 'inf').
    assert skips == SkipCounts(n_read=28, n_kept=22, magnorm_ge_50=1, inf_or_nan=2, a_lt_b=1,
                               knots_npoints_le_0=1, unsupported_type=1,
                               unsupported_names=(("FITS image", 1),))
    df = read_objects(out).set_index("line")
    assert not {48, 49} & set(df.index) and "MS_567_8" not in set(df.id)
    assert list(df[df.id == "MS_inf_8"].index) == [22, 52, 54]
    assert df.loc[54, "sed"].endswith("BT-Settlinf.spec.gz")
    assert "811883374597" not in set(df.id)  # magnorm 1000

    def dust(obj_id):
        row = df[df.id == obj_id].iloc[0]
        return row.internal_av, row.internal_rv, row.galactic_av, row.galactic_rv

    assert dust("811883456516") == (0.0, 3.1, 0.0630700848, 3.1)  # none CCM
    assert dust("956090372100") == (0.0651282621, 3.1, 0.0651282621, 3.1)  # CCM CCM
    assert dust("956090392580") == (0.0639515271, 3.1, 0.0, 3.1)  # CCM none
    assert dust("811883374596") == (0.0, 3.1, 0.0, 3.1)  # none none
    assert dust("34307989098523") == (0.300000012, 3.0999999, 0.0, 3.1)  # sersic2d CCM none
    assert dust("34314197354523") == (0.0, 3.1, 0.0595998126, 3.1)  # sersic2d none CCM


@needs_shared
def test_phosim_header_and_missing_include(tmp_path):
    catalog = SHARED / "phosim_cat_466749.txt"
    with pytest.warns(Dc2flowWarning, match="phosim_cat_466749.txt: header has no 'seqnum' key") as record:
        visit = read_header(catalog)
    assert len(record) == 1
    assert (visit.visit, visit.filter, visit.band, visit.seqnum, visit.nsnap) == (466749, 0, "u", 0, 1)
    assert visit.rottelpos_deg == 42.8902454 and visit.path == str(catalog)
    assert visit.extra == (("camconfig", "1"), ("minsource", "100"))

    out = tmp_path / "objects.parquet"
    with pytest.warns(Dc2flowWarning), pytest.raises(CatalogError) as info:
        read_catalog(catalog, out)
    message = str(info.value)
    assert "phosim_cat_466749.txt:22:" in message  # the first includeobj line
    assert str(SHARED / "star_cat_466749.txt.gz") in message
    assert "check the includeobj path or copy the file beside the catalog" in message
    assert (info.value.line, info.value.path) == (22, str(catalog))
    assert_no_output(out)


# ---------------------------------------------------------------------------------------------
# Synthetic catalogs: includes, streaming


def test_includeobj_gzip_recursion(tmp_path):
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "b.txt").write_text("# objects of b\n\n" + POINT.format(id="b1") + "\n" + SERSIC.format(id="b2") + "\n")
    with gzip.open(sub / "a.txt.gz", "wt") as fh:
        fh.write(KNOTS.format(id="a1") + "\nincludeobj b.txt\n" + POINT.format(id="a2") + "\n")
    top = write_catalog(tmp_path / "top.txt", POINT.format(id="t1"), "includeobj sub/a.txt.gz",
                        "# a comment", POINT.format(id="t2"))
    out = tmp_path / "objects.parquet"
    visit, skips = read_catalog(top, out)
    assert skips == SkipCounts(n_read=6, n_kept=6)
    assert skips.sources == (str(top), str(tmp_path / "sub" / "a.txt.gz"), str(tmp_path / "sub" / "b.txt"))
    df = read_objects(out)
    a, b = str(tmp_path / "sub" / "a.txt.gz"), str(tmp_path / "sub" / "b.txt")
    assert list(zip(df.id, df.source, df.line)) == [
        ("t1", str(top), N_HEADER_LINES + 1),
        ("a1", a, 1), ("b1", b, 3), ("b2", b, 4), ("a2", a, 3),
        ("t2", str(top), N_HEADER_LINES + 4),
    ]
    assert df.set_index("id").loc["a1", "npoints"] == 23


def test_gzipped_top_level_catalog(tmp_path):
    path = tmp_path / "instcat.txt.gz"
    with gzip.open(path, "wt") as fh:
        fh.write(header_text() + POINT.format(id="g1") + "\n")
    assert read_header(path).visit == 161899
    visit, skips = read_catalog(path)
    assert skips.n_kept == 1


def test_streaming_250k_lines(tmp_path):
    path = tmp_path / "big.txt"
    with open(path, "w") as fh:
        fh.write(header_text())
        for i in range(250_000):
            fh.write((POINT if i % 2 else SERSIC).format(id=i) + "\n")
    out = tmp_path / "objects.parquet"
    start = time.perf_counter()
    visit, skips = read_catalog(path, out, chunk_rows=50_000)
    print(f"parsed 250,000 object lines in {time.perf_counter() - start:.1f} s")
    assert skips == SkipCounts(n_read=250_000, n_kept=250_000)
    meta = pq.ParquetFile(out).metadata
    assert (meta.num_rows, meta.num_row_groups) == (250_000, 5)
    assert pq.read_table(out, columns=["id"]).column("id")[-1].as_py() == "249999"


def test_iter_objects_reader(tmp_path):
    path = write_catalog(tmp_path / "c.txt", *(POINT.format(id=i) for i in range(5)))
    reader = iter_objects(path, chunk_rows=2)
    assert reader.visit.visit == 161899 and reader.skips is None
    assert [b.num_rows for b in reader] == [2, 2, 1]
    assert reader.skips == SkipCounts(n_read=5, n_kept=5)
    assert all(b.schema.equals(OBJECT_SCHEMA) for b in iter_objects(path))
    with iter_objects(path, chunk_rows=1) as early:  # closing early is fine
        next(early)
    assert early.skips is None
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ConfigError, match="chunk_rows"):
            iter_objects(path, chunk_rows=bad)


def test_header_only_catalog_writes_empty_table(tmp_path):
    path = write_catalog(tmp_path / "c.txt")
    out = tmp_path / "objects.parquet"
    visit, skips = read_catalog(path, out)
    assert skips == SkipCounts() and skips.summary() == "kept 0 of 0 objects; skipped 0"
    table = pq.read_table(out)
    assert table.num_rows == 0 and table.schema.equals(OBJECT_SCHEMA)


def test_read_header_stops_at_first_object(tmp_path):
    path = write_catalog(tmp_path / "c.txt", POINT.format(id=1), "object this line is garbage")
    assert read_header(path).visit == 161899
    with pytest.raises(CatalogError, match=r"c\.txt:22: 'object' line has 5 fields"):
        read_catalog(path)


def test_header_defaults_and_unknown_keys(tmp_path):
    header = header_text(seqnum=None, nsnap=None, moonra=None) + "camconfig 1\nOpsim_note hello world\n"
    path = write_catalog(tmp_path / "c.txt", header=header)
    with pytest.warns(Dc2flowWarning) as record:
        visit = read_header(path)
    assert sorted(str(w.message).split("'")[1] for w in record) == ["moonra", "nsnap", "seqnum"]
    assert all(str(path) in str(w.message) for w in record)
    assert (visit.seqnum, visit.nsnap, visit.moon_ra_deg) == (0, 1, 0.0)
    assert visit.extra == (("Opsim_note", "hello world"), ("camconfig", "1"))
    assert set(REQUIRED_KEYS) | set(OPTIONAL_DEFAULTS) | set(ROTATION_KEYS) == set(HEADER)
    for f, band in enumerate(BANDS):
        path.write_text(header_text(filter=str(f)))
        assert read_header(path).band == band


def test_rotation_needs_one_of_the_two_angles(tmp_path):
    path = write_catalog(tmp_path / "c.txt", header=header_text(rotskypos=None, rottelpos=None))
    with pytest.raises(CatalogError, match=r"c.txt:\d+: header has neither 'rotskypos' nor 'rottelpos'; add one"):
        read_header(path)
    path.write_text(header_text(rotskypos=None))
    with pytest.warns(Dc2flowWarning, match="no 'rotskypos' key, derived .* from 'rottelpos' and the parallactic"):
        visit = read_header(path)
    assert visit.rotation_given == "rottelpos" and visit.rottelpos_deg == 1.0 and 0 <= visit.rotskypos_deg < 360


def test_unsupported_types_counted_by_name(tmp_path, caplog):
    fits = ("object L1 31.1 -10.1 18. galaxySED/Const.25E09.02Z.spec.gz 1.2 0 0 0 0 0 "
            "lensed_{}.fits.gz 0.1 0 CCM 0.2 3.1 CCM 0.05 3.1")
    lines = [fits.format(1), fits.format(2), POINT.format(id=1).replace(" point ", " sphere "),
             POINT.format(id=2)]
    path = write_catalog(tmp_path / "c.txt", *lines)
    with caplog.at_level(logging.INFO, logger="dc2flow.catalog"):
        visit, skips = read_catalog(path)
    assert skips == SkipCounts(n_read=4, n_kept=1, unsupported_type=3,
                               unsupported_names=(("FITS image", 2), ("sphere", 1)))
    assert "unsupported type (FITS image x2, sphere x1)" in skips.summary()
    assert any("unknown type sphere" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)


def test_nonfinite_values_skipped(tmp_path):
    base = POINT.format(id="MS_inf_nan")
    lines = [base.replace(" 22.5 ", " INF "), base.replace("0.06", "-inf"), base.replace("0.06", "+Inf"),
             base.replace(" 0 0 0 0 0 0 ", " nan 0 0 0 0 0 "), base.replace("0.06", "1e999"), base]
    path = write_catalog(tmp_path / "c.txt", *lines)
    visit, skips = read_catalog(path)
    assert (skips.inf_or_nan, skips.n_kept) == (5, 1)


def test_skip_rules_for_shapes(tmp_path):
    lines = [SERSIC.format(id=1).replace("0.58 0.44", "0.44 0.58"),  # a < b
             KNOTS.format(id=2).replace("0.41 0.26", "0.26 0.41"),  # a < b
             KNOTS.format(id=3).replace(" 23 ", " -2 "),  # npoints <= 0
             POINT.format(id=4).replace(" 22.5 ", " 50 "),  # magnorm >= 50
             SERSIC.format(id=5).replace("0.58 0.44", "0.5 0.5"),  # a == b is kept
             POINT.format(id=6).replace(" 22.5 ", " 49.99 ")]
    path = write_catalog(tmp_path / "c.txt", *lines)
    visit, skips = read_catalog(path)
    assert skips == SkipCounts(n_read=6, n_kept=2, magnorm_ge_50=1, a_lt_b=2, knots_npoints_le_0=1)


# ---------------------------------------------------------------------------------------------
# Malformed catalogs: CatalogError with file:line, and no output left behind


def replace_in(line: str, old: str, new: str) -> str:
    assert old in line
    return line.replace(old, new, 1)


OBJ_LINE = N_HEADER_LINES + 2  # the bad object follows one good one
MALFORMED = {
    "too few fields": (replace_in(POINT, " 0 0 0 0 0 0 point", " point"), OBJ_LINE,
                       "'object' line has 11 fields, point needs 15 or more"),
    "too few for sersic2d": (replace_in(SERSIC, " 2.7 1 CCM 0.1 3.0 CCM 0.05 3.1", " 2.7 none"), OBJ_LINE,
                             "'object' line has 17 fields, sersic2d needs 19 or more"),
    "missing shear field": (replace_in(POINT, " 0 0 0 0 0 0 ", " 0 0 0 0 0 "), OBJ_LINE,
                            "'object' line has 'none' where its type belongs"),
    "magnorm not a number": (replace_in(POINT, " 22.5 ", " abc "), OBJ_LINE, "magnorm is not a number ('abc')"),
    "sersic n not a number": (replace_in(SERSIC, " 2.7 1 ", " 2.7 one "), OBJ_LINE, "n is not a number ('one')"),
    "dust A_V not a number": (replace_in(POINT, "0.06", "x"), OBJ_LINE, "galactic A_V is not a number ('x')"),
    "bad dust keyword": (replace_in(POINT, "point none", "point None"), OBJ_LINE,
                         "internal dust is neither 'none' nor 'CCM' ('None')"),
    "CCM without values": (replace_in(POINT, "CCM 0.06 3.1", "CCM 0.06"), OBJ_LINE,
                           "galactic dust 'CCM' needs A_V and R_V ('CCM 0.06')"),
    "trailing tokens": (POINT + " 7 8", OBJ_LINE,
                        "'object' line has 19 fields, point with this dust takes 17 (extra: '7 8')"),
    "knots npoints fractional": (replace_in(KNOTS, " 23 ", " 2.5 "), OBJ_LINE, "knots npoints is not a whole number"),
    "header key after objects": ("seeing 0.7", OBJ_LINE, "'seeing' line after the first object"),
    "includeobj without name": ("includeobj", OBJ_LINE, "'includeobj' needs exactly one file name"),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_object_lines(tmp_path, name):
    bad, line, reason = MALFORMED[name]
    path = write_catalog(tmp_path / "c.txt", POINT.format(id=1), bad.format(id=2), POINT.format(id=3))
    out = tmp_path / "out" / "objects.parquet"
    with pytest.raises(CatalogError) as info:
        read_catalog(path, out, chunk_rows=1)  # a batch is written before the error
    assert str(info.value).startswith(f"{path}:{line}: {reason}")
    assert (info.value.path, info.value.line) == (str(path), line)
    assert_no_output(out)


HEADER_CASES = {
    "non-number header value": (header_text(mjd="soon"), 3, "header key 'mjd' is not a number ('soon')"),
    "non-integer obshistid": (header_text(obshistid="12.5"), 16, "header key 'obshistid' is not a whole number"),
    "infinite seeing": (header_text(seeing="inf"), 18, "header key 'seeing' is not finite"),
    "filter 7": (header_text(filter="7"), 6, "filter is not 0-5 (7); use 0-5 for u, g, r, i, z, y."),
    "missing required key": (header_text(seeing=None), N_HEADER_LINES - 1,
                             "header has no 'seeing' key; add the key to the header."),
    "two missing keys": (header_text(seeing=None, vistime=None), N_HEADER_LINES - 2,
                         "header has no 'seeing' key (also missing: vistime); add the key to the header."),
}


@pytest.mark.parametrize("name", sorted(HEADER_CASES))
def test_malformed_headers(tmp_path, name):
    header, line, reason = HEADER_CASES[name]
    path = write_catalog(tmp_path / "c.txt", POINT.format(id=1), header=header)
    out = tmp_path / "objects.parquet"
    for read in (read_header, lambda p: read_catalog(p, out)):
        with pytest.raises(CatalogError) as info:
            read(path)
        assert str(info.value).startswith(f"{path}:{line}: {reason}")
    assert_no_output(out)


def test_error_inside_included_file_names_that_file(tmp_path):
    (tmp_path / "inner.txt").write_text(POINT.format(id=1) + "\n" + replace_in(POINT, " 22.5 ", " abc ") + "\n")
    with gzip.open(tmp_path / "middle.txt.gz", "wt") as fh:
        fh.write("# middle\nincludeobj inner.txt\n")
    path = write_catalog(tmp_path / "c.txt", POINT.format(id=0), "includeobj middle.txt.gz")
    out = tmp_path / "objects.parquet"
    with pytest.raises(CatalogError) as info:
        read_catalog(path, out, chunk_rows=1)
    assert str(info.value).startswith(f"{tmp_path / 'inner.txt'}:2: magnorm is not a number ('abc')")
    assert_no_output(out)


def test_header_line_in_included_file(tmp_path):
    (tmp_path / "inc.txt").write_text(POINT.format(id=1) + "\nmjd 60000.0\n")
    path = write_catalog(tmp_path / "c.txt", "includeobj inc.txt")
    with pytest.raises(CatalogError, match=r"inc\.txt:2: 'mjd' line in an included file"):
        read_catalog(path, tmp_path / "objects.parquet")
    assert_no_output(tmp_path / "objects.parquet")


def test_missing_and_circular_includes(tmp_path):
    path = write_catalog(tmp_path / "c.txt", POINT.format(id=1), "includeobj nowhere/stars.txt.gz")
    with pytest.raises(CatalogError) as info:
        read_catalog(path)
    assert str(info.value) == (f"{path}:{N_HEADER_LINES + 2}: included file not found "
                               f"({tmp_path / 'nowhere' / 'stars.txt.gz'}); "
                               "check the includeobj path or copy the file beside the catalog.")
    (tmp_path / "loop.txt").write_text("includeobj loop.txt\n")
    path = write_catalog(tmp_path / "c.txt", "includeobj loop.txt")
    with pytest.raises(CatalogError, match=r"loop\.txt:1: 'includeobj' includes a file that includes it"):
        read_catalog(path)


def test_missing_catalog(tmp_path):
    with pytest.raises(CatalogError, match=r"nope\.txt: cannot open the catalog"):
        read_header(tmp_path / "nope.txt")


def test_corrupt_gzip_include(tmp_path):
    (tmp_path / "inc.txt.gz").write_bytes(gzip.compress(b"\n".join([POINT.format(id=i).encode() for i in range(50)]))[:-40])
    path = write_catalog(tmp_path / "c.txt", "includeobj inc.txt.gz")
    with pytest.raises(CatalogError, match=r"inc\.txt\.gz:\d+: cannot read the file"):
        read_catalog(path, tmp_path / "objects.parquet")
    assert_no_output(tmp_path / "objects.parquet")


def test_existing_output_unchanged_on_failure(tmp_path):
    out = tmp_path / "objects.parquet"
    good = write_catalog(tmp_path / "good.txt", POINT.format(id=1), POINT.format(id=2))
    read_catalog(good, out)
    before = out.read_bytes()
    bad = write_catalog(tmp_path / "bad.txt", POINT.format(id=3), replace_in(POINT, "22.5", "x"))
    with pytest.raises(CatalogError):
        read_catalog(bad, out, chunk_rows=1)
    assert out.read_bytes() == before and list(read_objects(out).id) == ["1", "2"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.txt", "good.txt", "objects.parquet"]


# ---------------------------------------------------------------------------------------------
# Records


def test_visit_json_round_trip_and_airmass(tmp_path):
    path = write_catalog(tmp_path / "c.txt", header=header_text(altitude="30") + "camconfig 1\n")
    visit = read_header(path)
    assert visit.airmass == pytest.approx(2.0)
    assert Visit.from_dict(visit.to_dict()) == visit
    visit.write_json(tmp_path / "v" / "visit.json")
    assert Visit.read_json(tmp_path / "v" / "visit.json") == visit
    assert [p.name for p in (tmp_path / "v").iterdir()] == ["visit.json"]
    assert visit.to_dict()["extra"] == {"camconfig": "1"}
    assert math.isinf(Visit.from_dict({**visit.to_dict(), "altitude_deg": -5.0}).airmass)
    (tmp_path / "junk.json").write_text("{}")
    with pytest.raises(CatalogError, match="junk.json: cannot read a visit record"):
        Visit.read_json(tmp_path / "junk.json")


def test_read_objects_rejects_other_tables(tmp_path):
    import pyarrow as pa
    pq.write_table(pa.table({"x": [1]}), tmp_path / "other.parquet")
    with pytest.raises(CatalogError, match="not a dc2flow object table"):
        read_objects(tmp_path / "other.parquet")


def test_catalog_error_pickles(tmp_path):
    path = write_catalog(tmp_path / "c.txt", replace_in(POINT, " 22.5 ", " abc "))
    with pytest.raises(CatalogError) as info:
        read_catalog(path)
    copy = pickle.loads(pickle.dumps(info.value))
    assert type(copy) is CatalogError and str(copy) == str(info.value)
    assert (copy.path, copy.line, copy.value) == (str(path), N_HEADER_LINES + 1, "'abc'")


def test_no_warnings_for_complete_header(tmp_path):
    path = write_catalog(tmp_path / "c.txt", POINT.format(id=1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_catalog(path, tmp_path / "o.parquet")
    assert os.path.exists(tmp_path / "o.parquet")


# ---------------------------------------------------------------------------------------------
# Bad-input probe: each error names file:line and the reason


def test_duplicate_header_key_with_another_value_is_refused(tmp_path):
    header = header_text() + "seeing 1.2\n"
    top = write_catalog(tmp_path / "dup.txt", POINT.format(id="s1"), header=header)
    with pytest.raises(CatalogError, match=rf"dup\.txt:{N_HEADER_LINES + 1}: header key 'seeing' is given again"
                                           rf".*line {list(HEADER).index('seeing') + 1} has '0\.7613760'"):
        read_header(top)
    same = write_catalog(tmp_path / "same.txt", header=header_text() + "seeing 0.7613760\n")
    assert read_header(same).seeing_arcsec == pytest.approx(0.7613760)


def test_bad_byte_is_reported_on_its_own_line(tmp_path):
    lines = [POINT.format(id=f"s{i}") for i in range(40)]
    path = tmp_path / "bad.txt"
    text = (header_text() + "".join(line + "\n" for line in lines)).encode()
    bad_line = N_HEADER_LINES + 22
    rows = text.split(b"\n")
    rows[bad_line - 1] = rows[bad_line - 1].replace(b"point", b"po\xffnt")
    path.write_bytes(b"\n".join(rows))
    with pytest.raises(CatalogError, match=rf"bad\.txt:{bad_line}: line is not valid UTF-8 text"):
        read_catalog(path, tmp_path / "objects.parquet")
    assert_no_output(tmp_path / "objects.parquet")


def test_leading_bom_is_accepted(tmp_path):
    path = tmp_path / "bom.txt"
    path.write_bytes(b"\xef\xbb\xbf" + (header_text() + POINT.format(id="s1") + "\n").encode())
    visit, skips = read_catalog(path, tmp_path / "objects.parquet")
    assert visit.visit == 161899 and skips.n_kept == 1


def test_endless_line_is_refused_without_reading_it_whole(tmp_path):
    path = write_catalog(tmp_path / "long.txt", POINT.format(id="s1"), "#" + "x" * 70_000, POINT.format(id="s2"))
    with pytest.raises(CatalogError, match=rf"long\.txt:{N_HEADER_LINES + 2}: line is longer than 65536"):
        read_catalog(path, tmp_path / "objects.parquet")
    gz = tmp_path / "endless.txt.gz"
    with gzip.open(gz, "wb") as fh:
        fh.write(b"\0" * 200_000)  # like includeobj /dev/zero
    top = write_catalog(tmp_path / "top.txt", "includeobj endless.txt.gz")
    with pytest.raises(CatalogError, match=r"endless\.txt\.gz:1: line is longer than 65536"):
        read_catalog(top, tmp_path / "objects2.parquet")


def test_repeated_include_is_refused(tmp_path):
    (tmp_path / "stars.txt").write_text(POINT.format(id="s1") + "\n")
    (tmp_path / "b.txt").write_text("includeobj stars.txt\n")
    top = write_catalog(tmp_path / "top.txt", "includeobj stars.txt", "includeobj b.txt")
    with pytest.raises(CatalogError, match=rf"b\.txt:1: 'includeobj' includes a file already included at "
                                           rf".*top\.txt:{N_HEADER_LINES + 1}"):
        read_catalog(top, tmp_path / "objects.parquet")


def test_killed_parse_leaves_a_temporary_that_the_next_run_removes(tmp_path):
    """A parse killed by SIGKILL (an out-of-memory kill) never reaches its clean-up: the next
    write of the same output removes the dead process's temporary, and keeps a live one's."""
    import signal
    import subprocess
    import sys

    os.mkfifo(tmp_path / "pipe.txt")    # the parse blocks here, its temporary open
    cat = write_catalog(tmp_path / "c.txt", *[POINT.format(id=f"s{i}") for i in range(5)], "includeobj pipe.txt")
    out = tmp_path / "out" / "objects.parquet"
    code = "import sys; from dc2flow.catalog import read_catalog; read_catalog(sys.argv[1], sys.argv[2], chunk_rows=2)"
    proc = subprocess.Popen([sys.executable, "-c", code, str(cat), str(out)])
    live = subprocess.Popen([sys.executable, "-c", code, str(cat), str(out)])
    try:
        deadline = time.monotonic() + 60
        while len(temps := sorted(p.name for p in out.parent.glob(".objects.parquet.tmp-*"))) < 2:
            assert time.monotonic() < deadline and proc.poll() is None and live.poll() is None
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        dead = [t for t in temps if t.endswith(f"-{proc.pid}")]
        assert len(dead) == 1 and (out.parent / dead[0]).exists()
        (out.parent / ".objects.parquet.tmp-otherhost-1").write_text("")   # another host's: kept
        good = write_catalog(tmp_path / "good.txt", POINT.format(id="g1"))
        read_catalog(good, out)
        left = sorted(p.name for p in out.parent.glob(".objects.parquet.tmp-*"))
        assert left == sorted([".objects.parquet.tmp-otherhost-1", *(t for t in temps if t.endswith(f"-{live.pid}"))])
        assert list(read_objects(out).id) == ["g1"]
    finally:
        for p in (proc, live):
            if p.poll() is None:
                p.kill()
                p.wait()


def test_include_outside_the_catalog_folder_is_refused(tmp_path):
    secret = tmp_path / "passwd"
    secret.write_text("root:x:0:0:root:/root:/bin/bash\n")
    (tmp_path / "cats" / "sub").mkdir(parents=True)
    (tmp_path / "cats" / "sub" / "stars.txt").write_text(POINT.format(id="s1") + "\n")
    (tmp_path / "cats" / "sub" / "up.txt").write_text("includeobj ../../passwd\n")
    for line in ("includeobj ../passwd", f"includeobj {secret}", "includeobj sub/up.txt"):
        top = write_catalog(tmp_path / "cats" / "top.txt", POINT.format(id="t1"), line)
        with pytest.raises(CatalogError) as info:
            read_catalog(top, tmp_path / "objects.parquet")
        message = str(info.value)
        assert "names a file outside the catalog's folder" in message
        assert f"includes may name only files in {tmp_path / 'cats'} and its subfolders" in message
        assert "root:x" not in message
    # inside the folder: ../ that stays inside is fine
    (tmp_path / "cats" / "sub" / "side.txt").write_text("includeobj ../sub/stars.txt\n")
    top = write_catalog(tmp_path / "cats" / "top.txt", POINT.format(id="t1"), "includeobj sub/side.txt")
    assert read_catalog(top)[1].n_kept == 2


def test_included_file_that_is_not_a_catalog_is_not_quoted(tmp_path):
    (tmp_path / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1::/:/bin/sh\n")
    top = write_catalog(tmp_path / "top.txt", POINT.format(id="t1"), "includeobj passwd")
    with pytest.raises(CatalogError) as info:
        read_catalog(top, tmp_path / "objects.parquet")
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'passwd'}:1: included file is not an instance catalog")
    assert f"in {tmp_path} or its subfolders" in message
    assert "root" not in message.replace(str(tmp_path), "") and "bin" not in message.replace(str(tmp_path), "")
    # once a file has shown an object line, only the bad line's first word is quoted, bounded
    (tmp_path / "inc.txt").write_text(POINT.format(id="s1") + "\n" + "sk_\x1b[2J" + "x" * 100 + " secret\n")
    top = write_catalog(tmp_path / "top.txt", POINT.format(id="t1"), "includeobj inc.txt")
    with pytest.raises(CatalogError) as info:
        read_catalog(top)
    message = str(info.value)
    assert f"inc.txt:2: 'sk_?[2J{'x' * 25}...' line in an included file" in message, message
    assert "secret" not in message and "\x1b" not in message


OBJ_AT = N_HEADER_LINES + 1


@pytest.mark.parametrize("header, obj, message", [
    ({"declination": "95"}, None, r"c\.txt:2: declination is out of range \(95\.0\); the parser accepts declination in \[-90, 90\]"),
    ({"rightascension": "415"}, None, r"c\.txt:1: rightascension is out of range"),
    ({"vistime": "1e30"}, None, r"c\.txt:20: vistime is out of range .* in \(0, 3600\]"),
    ({"seeing": "1000"}, None, r"c\.txt:18: seeing is out of range .* in \(0, 5\]"),
    ({"obshistid": "123456789"}, None, r"c\.txt:16: obshistid is out of range .* in \[0, 1e\+08\]"),
    ({"obshistid": "-5"}, None, r"c\.txt:16: obshistid is out of range"),
    ({}, replace_in(POINT, " -10.09 ", " 95 "), rf"c\.txt:{OBJ_AT}: dec is out of range"),
    ({}, replace_in(POINT, " 31.24 ", " 415 "), rf"c\.txt:{OBJ_AT}: ra is out of range .* in \[0, 360\]"),
    ({}, replace_in(SERSIC, " 2.7 1 ", " 2.7 0 "), rf"c\.txt:{OBJ_AT}: sersic n is out of range .* in \[0\.3, 6\.2\]"),
    ({}, replace_in(SERSIC, " 2.7 1 ", " 2.7 100 "), rf"c\.txt:{OBJ_AT}: sersic n is out of range"),
    ({}, replace_in(KNOTS, " 74.2 23 ", " 74.2 1e9 "), rf"c\.txt:{OBJ_AT}: knots npoints is out of range .* \[1, 1000\]"),
    ({}, replace_in(KNOTS, " 74.2 23 ", " 74.2 3e9 "), rf"c\.txt:{OBJ_AT}: knots npoints is out of range"),
    ({}, replace_in(POINT, " 22.5 ", " -50 "), rf"c\.txt:{OBJ_AT}: magnorm is out of range"),
    ({}, replace_in(SERSIC, " 0.5 0.01 ", " -1 0.01 "), rf"c\.txt:{OBJ_AT}: redshift is out of range .* \[0, 20\]"),
    ({}, replace_in(SERSIC, " 0.58 0.44 ", " 0.58 -0.44 "), rf"c\.txt:{OBJ_AT}: minor axis is out of range"),
    ({}, replace_in(SERSIC, " -0.02 0.03 ", " -0.02 1 "), rf"c\.txt:{OBJ_AT}: kappa is out of range .* \[-inf, 1\)"),
    ({}, replace_in(SERSIC, " 0.01 -0.02 0.03 ", " 0.8 -0.7 0.03 "), rf"c\.txt:{OBJ_AT}: reduced shear is out of range"),
    ({}, replace_in(SERSIC, " -0.02 0.03 ", " -0.02 0.6 "), rf"c\.txt:{OBJ_AT}: magnification is out of range .* \(0, 4\]"),
    ({}, replace_in(SERSIC, " 0.58 0.44 ", " 3000 3000 "), rf"c\.txt:{OBJ_AT}: major axis is out of range .* \(0, 10\]"),
])
def test_values_out_of_range_are_refused_at_parse(tmp_path, header, obj, message):
    path = write_catalog(tmp_path / "c.txt", *([obj] if obj else [POINT.format(id=1)]), header=header_text(**header))
    with pytest.raises(CatalogError, match=message):
        read_catalog(path, tmp_path / "objects.parquet")
    assert_no_output(tmp_path / "objects.parquet")


def test_value_ranges_hold_for_the_limits_themselves(tmp_path):
    at_limits = [replace_in(SERSIC, " 0.58 0.44 2.7 1 ", " 10 0.1 2.7 6.2 ").format(id="s"),
                 replace_in(KNOTS, " 74.2 23 ", " 74.2 1000 ").format(id="k"),
                 replace_in(POINT, " 31.24 -10.09 22.5 ", " 360 -90 -10 ").format(id="p")]
    path = write_catalog(tmp_path / "c.txt", *at_limits,
                         header=header_text(declination="90", vistime="3600", seeing="5", obshistid="99999999"))
    assert read_catalog(path)[1].n_kept == 3
