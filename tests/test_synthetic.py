"""Tests of dc2flow.synthetic: synthetic DC2-format instance catalogs."""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import numpy as np
import pytest

from dc2flow import synthetic
from dc2flow.errors import ConfigError
from dc2flow.synthetic import (
    BRIGHT_STAR_ID_START,
    GALAXY_SEDS,
    STAR_SEDS,
    cap_area_deg2,
    make_catalog,
    sample_cap,
)

SED_LIBRARY = Path(__file__).resolve().parents[2] / "shared" / "data" / "imsim" / "sed_library"

HEADER_KEYS = [
    "rightascension", "declination", "mjd", "altitude", "azimuth", "filter", "rotskypos",
    "rottelpos", "dist2moon", "moonalt", "moondec", "moonphase", "moonra", "nsnap", "seqnum",
    "obshistid", "seed", "seeing", "sunalt", "vistime",
]
SUB_PREFIXES = ["star_cat", "bulge_gal_cat", "disk_gal_cat", "knots_cat"]

# Small catalogs: a 0.25 degree cap at a few hundred objects per square degree.
SMALL = dict(radius_deg=0.25, star_density=2000.0, galaxy_density=2000.0)


def _make(tmp_path, name="cat", **kw):
    args = dict(outdir=tmp_path / name, visit=1234, ra_deg=60.0, dec_deg=-38.0, band="r", seed=7)
    args.update(SMALL)
    args.update(kw)
    return Path(make_catalog(**args))


def _names(visit):
    return [f"phosim_cat_{visit}.txt"] + [f"{p}_{visit}.txt.gz" for p in SUB_PREFIXES]


def _objects(path: Path) -> list[list[str]]:
    with gzip.open(path, "rt") as f:
        return [line.split() for line in f if line.strip()]


def _separation_deg(ra1, dec1, ra2, dec2):
    ra1, dec1, ra2, dec2 = map(np.radians, (ra1, dec1, ra2, dec2))
    h = np.sin((dec2 - dec1) / 2) ** 2 + np.cos(dec1) * np.cos(dec2) * np.sin((ra2 - ra1) / 2) ** 2
    return np.degrees(2 * np.arcsin(np.sqrt(np.clip(h, 0, 1))))


def test_files_and_header(tmp_path):
    main = _make(tmp_path, band="i")
    assert main.name == "phosim_cat_1234.txt"
    assert sorted(p.name for p in main.parent.iterdir()) == sorted(_names(1234))  # no temp files
    lines = main.read_text().splitlines()
    keys = [line.split()[0] for line in lines]
    assert keys[: len(HEADER_KEYS)] == HEADER_KEYS
    header = dict(line.split() for line in lines[: len(HEADER_KEYS)])
    assert header["filter"] == "3"
    assert header["obshistid"] == "1234" and header["seed"] == "7" and header["nsnap"] == "1"
    assert float(header["rightascension"]) == 60.0 and float(header["declination"]) == -38.0
    assert float(header["vistime"]) == 30.0
    includes = [line.split()[1] for line in lines[len(HEADER_KEYS):]]
    assert includes == _names(1234)[1:]


@pytest.mark.parametrize("band", list("ugrizy"))
def test_filter_index(tmp_path, band):
    main = _make(tmp_path, band=band, star_density=0.0, galaxy_density=0.0)
    header = dict(line.split() for line in main.read_text().splitlines())
    assert int(header["filter"]) == "ugrizy".index(band)


def test_deterministic(tmp_path):
    a, b = _make(tmp_path, "a"), _make(tmp_path, "b")
    for name in _names(1234):
        assert (a.parent / name).read_bytes() == (b.parent / name).read_bytes(), name
    c = _make(tmp_path, "c", seed=8)
    for name in _names(1234)[1:]:
        assert (a.parent / name).read_bytes() != (c.parent / name).read_bytes(), name


def test_object_lines(tmp_path):
    main = _make(tmp_path)
    d = main.parent
    stars = _objects(d / "star_cat_1234.txt.gz")
    bulges = _objects(d / "bulge_gal_cat_1234.txt.gz")
    disks = _objects(d / "disk_gal_cat_1234.txt.gz")
    knots = _objects(d / "knots_cat_1234.txt.gz")
    assert stars and bulges and disks and knots
    assert len(bulges) == len(disks) == len(knots)

    ids = [int(t[1]) for t in stars + bulges + disks + knots]
    assert len(set(ids)) == len(ids)
    for t in stars:
        # object id ra dec magnorm sed z g1 g2 kappa dra ddec point none CCM av rv
        assert len(t) == 17 and t[0] == "object" and t[12] == "point"
        assert t[13] == "none" and t[14] == "CCM" and float(t[15]) >= 0 and t[16] == "3.1"
        assert t[5] in STAR_SEDS and float(t[4]) < 50
        assert all(float(x) == 0 for x in t[6:12])
    for comp, n_sersic, suffix in ((bulges, "4", 97), (disks, "1", 107), (knots, None, 117)):
        for t in comp:
            # ... TYPE a b pa n|npoints CCM av rv CCM av rv
            assert len(t) == 23 and t[0] == "object"
            assert int(t[1]) % 1024 == suffix
            assert t[12] == ("knots" if n_sersic is None else "sersic2d")
            a, b, pa = float(t[13]), float(t[14]), float(t[15])
            assert a >= b > 0 and 0 <= pa < 180
            if n_sersic is None:
                assert 1 <= int(t[16]) <= 50
            else:
                assert t[16] == n_sersic
            assert t[17] == "CCM" and 0 <= float(t[18]) <= 0.5 and t[19] == "3.1"
            assert t[20] == "CCM" and t[22] == "3.1"
            assert t[5] in GALAXY_SEDS and float(t[4]) < 50 and float(t[6]) > 0
            g1, g2, kappa = map(float, t[7:10])
            assert math.hypot(g1, g2) < 0.05 and abs(kappa) < 0.05
            assert t[10] == t[11] == "0"
    # Components of one galaxy share position, redshift, lensing and Milky-Way dust;
    # knots share the disk's shape.
    for b, dk, k in zip(bulges, disks, knots):
        assert int(b[1]) // 1024 == int(dk[1]) // 1024 == int(k[1]) // 1024
        assert b[2:4] == dk[2:4] == k[2:4] and b[6:12] == dk[6:12] == k[6:12]
        assert b[20:] == dk[20:] == k[20:]
        assert dk[13:16] == k[13:16]


# (a field must rise at Rubin: the header's time and rotator angle are Rubin's; the north pole is tested in sample_cap)
@pytest.mark.parametrize("ra, dec", [(60.0, -38.0), (10.0, -89.5), (359.9, 5.0), (0.05, 50.0)])
def test_positions_within_cap(tmp_path, ra, dec):
    radius = 0.5
    main = _make(tmp_path, ra_deg=ra, dec_deg=dec, radius_deg=radius)
    objs = [t for p in SUB_PREFIXES for t in _objects(main.parent / f"{p}_1234.txt.gz")]
    ras = np.array([float(t[2]) for t in objs])
    decs = np.array([float(t[3]) for t in objs])
    assert np.all((ras >= 0) & (ras < 360)) and np.all(np.abs(decs) <= 90)
    sep = _separation_deg(ra, dec, ras, decs)
    assert sep.max() <= radius + 1e-9
    assert sep.max() > 0.9 * radius  # the whole cap is used


def test_sample_cap_uniform_in_solid_angle():
    rng = np.random.default_rng(1)
    radius = 2.0
    for ra0, dec0 in [(0.0, 90.0), (359.99, -90.0), (180.0, 0.0), (0.0, -89.9)]:
        ra, dec = sample_cap(rng, 20000, ra0, dec0, radius)
        assert np.all((ra >= 0) & (ra < 360))
        sep = _separation_deg(ra0, dec0, ra, dec)
        assert sep.max() <= radius + 1e-9
        # Uniform in solid angle: a fraction (1 - cos r') / (1 - cos r) lies within r'.
        inner = np.mean(sep < radius / 2)
        expect = (1 - math.cos(math.radians(radius / 2))) / (1 - math.cos(math.radians(radius)))
        assert abs(inner - expect) < 0.02
    ra, dec = sample_cap(rng, 0, 10.0, 10.0, 1.0)
    assert ra.shape == dec.shape == (0,)


def test_density_scales(tmp_path):
    n1 = len(_objects(_make(tmp_path, "a", star_density=1000.0).parent / "star_cat_1234.txt.gz"))
    n2 = len(_objects(_make(tmp_path, "b", star_density=2000.0).parent / "star_cat_1234.txt.gz"))
    mean1 = 1000.0 * cap_area_deg2(0.25)
    assert abs(n1 - mean1) < 5 * math.sqrt(mean1)
    assert abs(n2 - 2 * mean1) < 5 * math.sqrt(2 * mean1)
    assert 1.6 < n2 / n1 < 2.5


def test_no_objects(tmp_path):
    main = _make(tmp_path, star_density=0.0, galaxy_density=0.0)
    for p in SUB_PREFIXES:
        assert _objects(main.parent / f"{p}_1234.txt.gz") == []


def test_star_magnitudes(tmp_path):
    main = _make(tmp_path, star_density=20000.0, galaxy_density=0.0, star_mag_min=18.0)
    mags = np.array([float(t[4]) for t in _objects(main.parent / "star_cat_1234.txt.gz")])
    assert mags.min() >= 18.0 and mags.max() <= 27.0
    # Counts rise with magnitude: more stars in the faintest magnitude than the brightest.
    assert np.sum(mags > 26) > 5 * np.sum(mags < 19)


def test_bright_stars(tmp_path):
    bright = [(60.1, -38.05, 9.5), (359.95, -38.0, 12.25)]
    main = _make(tmp_path, bright_stars=bright)
    stars = _objects(main.parent / "star_cat_1234.txt.gz")
    extra = [t for t in stars if int(t[1]) >= BRIGHT_STAR_ID_START]
    assert [int(t[1]) for t in extra] == [BRIGHT_STAR_ID_START, BRIGHT_STAR_ID_START + 1]
    for t, (ra, dec, mag) in zip(extra, bright):
        assert float(t[2]) == pytest.approx(ra) and float(t[3]) == pytest.approx(dec)
        assert float(t[4]) == pytest.approx(mag) and t[12] == "point"


@pytest.mark.parametrize(
    "key, value",
    [
        ("band", "x"),
        ("band", "R"),
        ("radius_deg", 0.0),
        ("radius_deg", 5.5),
        ("star_density", -1.0),
        ("galaxy_density", -0.1),
        ("galaxy_density", float("nan")),
        ("dec_deg", -90.5),
        ("dec_deg", 91.0),
        ("altitude_deg", 0.0),
        ("altitude_deg", 90.1),
        ("visit", -1),
        ("visit", 1.5),
        ("seed", -3),
        ("exptime_s", 0.0),
        ("seeing_arcsec", -0.7),
        ("star_mag_min", 27.0),
        ("ra_deg", float("inf")),
    ],
)
def test_bad_arguments(tmp_path, key, value):
    with pytest.raises(ConfigError, match=key) as info:
        _make(tmp_path, **{key: value})
    assert info.value.key == key
    assert not (tmp_path / "cat").exists() or not any((tmp_path / "cat").iterdir())


@pytest.mark.parametrize("bright", [[(1.0, 2.0)], [(1.0, 95.0, 10.0)], [(1.0, 2.0, 60.0)], [None]])
def test_bad_bright_stars(tmp_path, bright):
    with pytest.raises(ConfigError, match=r"bright_stars\[0\]"):
        _make(tmp_path, bright_stars=bright)


def test_sample_cap_bad_arguments():
    rng = np.random.default_rng(0)
    with pytest.raises(ConfigError, match="radius_deg"):
        sample_cap(rng, 10, 0.0, 0.0, 0.0)
    with pytest.raises(ConfigError, match="dec_deg"):
        sample_cap(rng, 10, 0.0, 100.0, 1.0)
    with pytest.raises(ConfigError, match="'n'"):
        sample_cap(rng, -1, 0.0, 0.0, 1.0)


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    calls = []

    def failing_replace(src, dst):
        calls.append(dst)
        raise OSError("disk full")

    monkeypatch.setattr(synthetic.os, "replace", failing_replace)
    with pytest.raises(OSError):
        _make(tmp_path)
    assert calls and list((tmp_path / "cat").iterdir()) == []


@pytest.mark.skipif(not SED_LIBRARY.is_dir(), reason="shared SED library slice not available")
def test_sed_names_exist():
    for name in STAR_SEDS + GALAXY_SEDS + (synthetic.BRIGHT_STAR_SED,):
        assert (SED_LIBRARY / name).is_file(), name
