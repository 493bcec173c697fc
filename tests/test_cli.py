"""The command line: errors are one clear line and exit 1; every verb documents itself."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SHARED, needs_shared

DC2FLOW = str(Path(sys.executable).parent / "dc2flow")


def run(*args, cwd=None):
    return subprocess.run([DC2FLOW, *args], capture_output=True, text=True, cwd=cwd, timeout=300)


@pytest.mark.parametrize("verb", ["parse", "partition", "render", "make-catalog", "focal-plane", "record", "register",
                                  "status", "query", "viewer"])
def test_help(verb):
    proc = run(verb, "--help")
    assert proc.returncode == 0 and "usage: dc2flow " + verb in proc.stdout


@needs_shared()
def test_missing_include_is_one_line_with_file_and_line(tmp_path):
    proc = run("parse", str(SHARED / "phosim_cat_466749.txt"), "--visit-json", str(tmp_path / "v.json"),
               "--objects", str(tmp_path / "o.parquet"), "--sources", str(tmp_path / "s.json"))
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("dc2flow parse: error: ")
    assert "phosim_cat_466749.txt:22:" in proc.stderr and "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_bad_options_are_named(tmp_path):
    proc = run("partition", "v.json", "o.parquet", "--out-dir", str(tmp_path), "--sensors", "R22_S11",
               "--options", '{"render": {"noise": 3}}')
    assert proc.returncode == 1 and "config key 'render.noise'" in proc.stderr


def test_focal_plane_and_make_catalog(tmp_path):
    out = tmp_path / "fp.csv"
    assert run("focal-plane", "--out", str(out)).returncode == 0
    assert len(out.read_text().splitlines()) == 190
    proc = run("make-catalog", "--outdir", str(tmp_path / "c"), "--visit", "7", "--ra-deg", "10", "--dec-deg", "-5",
               "--band", "g", "--seed", "3", "--radius-deg", "0.1", "--bright-star", "10.0,-5.0,15")
    assert proc.returncode == 0 and proc.stdout.strip().endswith("phosim_cat_7.txt")
    assert " 10.0000000000 -5.0000000000 15.0000000 " in "".join(
        __import__("gzip").open(p, "rt").read() for p in (tmp_path / "c").glob("star_cat_7.txt.gz"))
