"""The command line: errors are one clear line and exit 1; every verb documents itself."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import SHARED, needs_shared

DC2FLOW = str(Path(sys.executable).parent / "dc2flow")


def run(*args, cwd=None):
    return subprocess.run([DC2FLOW, *args], capture_output=True, text=True, cwd=cwd, timeout=300)


@pytest.mark.parametrize("verb", ["parse", "partition", "render", "make-catalog", "focal-plane", "validate",
                                  "validate-visit", "mosaic", "cutout", "plot-resources", "record", "register", "forecast",
                                  "status", "query", "viewer", "campaign"])
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


def test_science_error_is_recorded_and_not_retried_on_unchanged_inputs(tmp_path):
    """A retry of a command that failed with a Dc2flowError refuses at once (exit 3) until an input changes."""
    good = run("make-catalog", "--outdir", str(tmp_path / "c"), "--visit", "7", "--ra-deg", "10", "--dec-deg", "-5",
               "--band", "g", "--seed", "3", "--radius-deg", "0.02")
    catalog = Path(good.stdout.strip())
    text = catalog.read_text()
    catalog.write_text(text + "object 1 10.0 -5.0 notanumber starSED/x.gz 0 0 0 0 0 0 point none none\n")
    record = tmp_path / "failures" / "parse.json"
    outs = ["--visit-json", str(tmp_path / "v.json"), "--objects", str(tmp_path / "o.parquet"),
            "--sources", str(tmp_path / "s.json")]
    first = run("--failure-record", str(record), "parse", str(catalog), *outs)
    assert first.returncode == 1 and "magnorm" in first.stderr and "not retried" not in first.stderr
    assert '"error": "CatalogError"' in record.read_text()
    again = run("--failure-record", str(record), "parse", str(catalog), *outs)
    assert again.returncode == 3 and "not retried" in again.stderr and "magnorm" in again.stderr
    os.utime(catalog, ns=(0, catalog.stat().st_mtime_ns + 10**9))     # touched: the inputs changed, run again
    assert run("--failure-record", str(record), "parse", str(catalog), *outs).returncode == 1
    catalog.write_text(text)                                            # fixed: runs, and the record is gone
    fixed = run("--failure-record", str(record), "parse", str(catalog), *outs)
    assert fixed.returncode == 0, fixed.stderr
    assert not record.exists() and (tmp_path / "v.json").exists()


def _parse_with_record(tmp_path):
    """A catalog that includes objs.txt, and a function running `parse` on it with a failure record."""
    catalog = tmp_path / "cat.txt"
    catalog.write_text("rightascension 10\ndeclination -5\nmjd 60000\naltitude 80\nfilter 1\nrotskypos 0\n"
                       "obshistid 9\nseed 9\nseeing 0.7\nvistime 30\nincludeobj objs.txt\n")
    outs = ["--visit-json", str(tmp_path / "v.json"), "--objects", str(tmp_path / "o.parquet"),
            "--sources", str(tmp_path / "s.json")]
    return lambda: run("--failure-record", str(tmp_path / "rec.json"), "parse", str(catalog), *outs)


GOOD_LINE = "object 1 10.0 -5.0 20.0 starSED/x.gz 0 0 0 0 0 0 point none none\n"


def test_a_fixed_included_file_makes_the_record_stale(tmp_path):
    """The file an error names (an includeobj file) is part of the record: fixing it reruns."""
    parse = _parse_with_record(tmp_path)
    (tmp_path / "objs.txt").write_text("object 1 10.0 -5.0 notanumber starSED/x.gz 0 0 0 0 0 0 point none none\n")
    assert parse().returncode == 1
    assert parse().returncode == 3
    (tmp_path / "objs.txt").write_text(GOOD_LINE)
    fixed = parse()
    assert fixed.returncode == 0, fixed.stderr


def test_file_system_errors_are_not_recorded(tmp_path):
    """A missing included file is an OSError behind the CatalogError: retried in full, never refused."""
    parse = _parse_with_record(tmp_path)
    for _ in range(2):
        proc = parse()
        assert proc.returncode == 1 and "included file not found" in proc.stderr
        assert not (tmp_path / "rec.json").exists()
    (tmp_path / "objs.txt").write_text(GOOD_LINE)
    fixed = parse()
    assert fixed.returncode == 0, fixed.stderr


def test_chmod_makes_the_record_stale(tmp_path):
    """Fixing a file's permissions changes only its ctime: that is a change of input too."""
    from dc2flow.io import file_stamp

    f = tmp_path / "x"
    f.write_text("x")
    before = file_stamp(f)
    time.sleep(0.05)                       # file systems with coarse (jiffy) time stamps
    os.chmod(f, 0o600)
    assert file_stamp(f) != before and file_stamp(tmp_path / "nope") == ""


def test_options_that_name_a_config_key_default_to_its_value():
    """An option whose help says "[default: section.key]" and has a default takes it from the config
    defaults (not a second copy that can drift: --time-limit-s once defaulted to inf, config 86400)."""
    import argparse
    import re

    from dc2flow import config
    from dc2flow.cli import build_parser

    defaults = config.load()
    checked = []

    def walk(parser, verb):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, f"{verb} {name}".strip())
            named = re.search(r"\[default: ([a-z_]+)\.([a-z_]+)\]", action.help or "")
            if named and action.default is not None:
                section, key = named.groups()
                assert action.default == defaults[section][key], (verb, action.dest)
                checked.append((verb, action.dest))

    walk(build_parser(), "")
    assert ("bundle", "time_limit_s") in checked and ("validate-visit", "jobs") in checked and len(checked) >= 8
