"""End to end: real Snakemake on a tiny synthetic catalog, as a user runs it."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import zipfile
import sys
from pathlib import Path

import pytest
from astropy.io import fits

from conftest import REPO, SHARED, needs_shared

BIN = str(Path(sys.executable).parent)
R22 = ["R22_S11", "R22_S12"]


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": BIN + os.pathsep + os.environ.get("PATH", "")}
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def config_args(catalogs, sensors, outdir="out"):
    sens = "all" if sensors == "all" else "[" + ",".join(sensors) + "]"
    return ["--config", f"catalogs=[{','.join(map(str, catalogs))}]", f"sensors={sens}", f"outdir={outdir}"]


@pytest.fixture(scope="module")
def run(tiny_catalog, tmp_path_factory):
    work = tmp_path_factory.mktemp("wf")
    snakemake(work, "--cores", "2", *config_args([tiny_catalog], R22))
    return work


def test_full_run_makes_valid_fits(run):
    images = sorted((run / "out" / "00001001").glob("eimage_*.fits"))
    assert [p.name for p in images] == ["eimage_00001001-0-r-R22_S11-det094.fits",
                                        "eimage_00001001-0-r-R22_S12-det095.fits"]
    for path in images:
        with fits.open(path, checksum=True) as hdul:
            assert hdul[0].verify_checksum() == 1
            assert hdul[0].header["OBSID"] == 1001 and hdul[0].header["CATSHA0"]
            assert hdul[0].header["NOBJECTS"] > 0
        assert path.with_name(path.name.replace("eimage_", "centroid_").replace(".fits", ".txt.gz")).exists()
    for stage in ("catalog", "partition", "render", "validation"):
        assert list((run / "out" / "benchmarks" / stage).rglob("*.tsv")), stage
        assert list((run / "out" / "logs" / stage).rglob("*.log")), stage
    assert not list(run.rglob(".*.tmp-*"))


@pytest.mark.slow
def test_validation_records_figures_and_mosaic(run):
    val = run / "out" / "validation" / "00001001"
    for det in R22:
        rec = json.loads((val / f"{det}.json").read_text())
        assert (rec["visit"], rec["det_name"], rec["band"]) == (1001, det, "r") and rec["status"] in ("ok", "flagged")
        assert rec["sky_e_per_px"] == pytest.approx(rec["sky_model_e_per_px"], rel=0.01)
    rows = (val / "summary.tsv").read_text().splitlines()
    assert len(rows) == 3 and rows[0].startswith("visit\tsnap\tdet_name\tband\tstatus\tflags")
    from PIL import Image

    assert Image.open(val / "mosaic.png").size == (3960, 3954)
    assert Image.open(val / "summary.png").format == Image.open(run / "out" / "validation" / "resources.png").format == "PNG"


@pytest.mark.slow
def test_report_holds_mosaic_figures_and_captions(run, tiny_catalog):
    report = run / "report.zip"
    snakemake(run, "--report", str(report), *config_args([tiny_catalog], R22))
    with zipfile.ZipFile(report) as zf:
        assert zf.testzip() is None
        names = zf.namelist()
        html = zf.read(next(n for n in names if n.endswith("report.html"))).decode()
    for figure in ("mosaic.png", "summary.png", "resources.png"):
        assert any(n.endswith("/" + figure) for n in names), (figure, names)
    for caption in ("Focal-plane mosaic of visit 00001001", "Validation of visit 00001001", "Resources of the campaign"):
        assert caption in html


@pytest.mark.slow
def test_lint_is_clean_but_for_software_environments(run, tiny_catalog):
    proc = snakemake(run, "--lint", *config_args([tiny_catalog], R22), check=False)
    lints = re.findall(r"^    \* (.+?):?$", proc.stdout + proc.stderr, re.M)
    assert lints and set(lints) == {"Specify a conda environment or container for each rule."}, lints


@pytest.mark.slow
def test_validation_config_reruns_only_validation_and_strict_fails(run, tiny_catalog, tmp_path):
    work = tmp_path / "copy"
    shutil.copytree(run, work, symlinks=True)
    (tmp_path / "strict.yaml").write_text("validation: {strict: true, sky_rtol: 0.00001}\n")
    args = ["--configfile", str(tmp_path / "strict.yaml"), *config_args([tiny_catalog], R22)]
    proc = snakemake(work, "-n", "--cores", "2", *args)
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", proc.stdout, re.M))
    assert counts.get("validate_visit") == "1", proc.stdout   # one job checks the visit's sensors
    assert "render_sensor" not in counts and "mosaic_visit" not in counts
    proc = snakemake(work, "--cores", "2", *args, check=False)
    assert proc.returncode != 0
    log = (work / "out" / "logs" / "validation" / "00001001.log").read_text()
    assert "dc2flow validate-visit: error:" in log and "R22_S11: sky" in log and "R22_S12: sky" in log
    assert "VALIDATION FLAGGED visit 1001 R22_S11: sky" in log
    # a failed job's outputs are removed: nothing half-done is left looking complete
    assert not (work / "out" / "validation" / "00001001" / "summary.tsv").exists()


@pytest.mark.slow
def test_camera_description_reruns_what_uses_the_sensor_geometry(run, tiny_catalog, perturbed_policy, tmp_path):
    work = tmp_path / "copy"
    shutil.copytree(run, work, symlinks=True)
    (tmp_path / "camera.yaml").write_text(f"camera: {{description: {perturbed_policy}}}\n")
    proc = snakemake(work, "-n", "-p", "--cores", "2", "--configfile", str(tmp_path / "camera.yaml"),
                     *config_args([tiny_catalog], R22))
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", proc.stdout, re.M))
    assert {k: counts.get(k) for k in ("partition_visit", "estimate_visit", "render_sensor", "mosaic_visit")} == \
        {"partition_visit": "1", "estimate_visit": "1", "render_sensor": "2", "mosaic_visit": "1"}, proc.stdout
    assert "parse_catalog" not in counts
    mosaic = next(line for line in proc.stdout.splitlines() if "dc2flow -v mosaic" in line)
    assert f"--camera-description {perturbed_policy}" in mosaic


def test_second_run_has_nothing_to_do(run, tiny_catalog):
    proc = snakemake(run, "--cores", "2", *config_args([tiny_catalog], R22))
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_deleted_image_is_remade_alone(run, tiny_catalog):
    victim = run / "out" / "00001001" / "eimage_00001001-0-r-R22_S12-det095.fits"
    before = (run / "out" / "00001001" / "eimage_00001001-0-r-R22_S11-det094.fits").stat().st_mtime_ns
    victim.unlink()
    proc = snakemake(run, "-n", "--cores", "2", *config_args([tiny_catalog], R22))
    assert re.search(r"render_sensor\s+1\b", proc.stdout), proc.stdout
    assert not re.search(r"partition_visit\s+1\b", proc.stdout)
    snakemake(run, "--cores", "2", *config_args([tiny_catalog], R22))
    assert victim.exists()
    assert (run / "out" / "00001001" / "eimage_00001001-0-r-R22_S11-det094.fits").stat().st_mtime_ns == before


def test_dry_run_lists_one_render_job_per_sensor(tiny_catalog, tmp_path):
    proc = snakemake(tmp_path, "-n", "--cores", "2", *config_args([tiny_catalog], "all"))
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", proc.stdout, re.M))
    assert counts["render_sensor"] == "189" and counts["partition_visit"] == "1" and counts["parse_catalog"] == "1"


@needs_shared()
def test_two_visits_dag_and_rulegraph(tiny_catalog, tmp_path):
    cats = [tiny_catalog, SHARED / "example_instance_catalog.txt"]
    proc = snakemake(tmp_path, "-n", "--cores", "2", *config_args(cats, "all"))
    assert dict(re.findall(r"^(\w+)\s+(\d+)$", proc.stdout, re.M))["render_sensor"] == "378"
    dag = snakemake(tmp_path, "--dag", *config_args(cats, R22)).stdout
    assert dag.lstrip().startswith("digraph") and dag.count("render_sensor") == 4
    rules = snakemake(tmp_path, "--rulegraph", *config_args(cats, R22)).stdout
    assert all(r in rules for r in ("parse_catalog", "partition_visit", "render_sensor", "all"))


@needs_shared()
def test_malformed_catalog_fails_with_file_and_line(tmp_path):
    lines = (SHARED / "example_instance_catalog.txt").read_text().splitlines(keepends=True)
    lines[40] = "object 123 60.1 -38.1 notanumber starSED/x.gz 0 0 0 0 0 0 point none none\n"
    bad = tmp_path / "bad_instcat.txt"
    bad.write_text("".join(lines))
    # with retries, as the Slurm profiles have: the retries refuse at once (a science error is not retried)
    proc = snakemake(tmp_path, "--cores", "1", "--retries", "2", *config_args([bad], ["R22_S11"]), check=False)
    assert proc.returncode != 0
    log = (tmp_path / "out" / "logs" / "catalog" / "00398414.log").read_text()
    assert "bad_instcat.txt:41:" in log and "magnorm" in log
    assert "not retried" in log and proc.stdout.count("rule parse_catalog:") + proc.stderr.count("rule parse_catalog:") >= 2
    record = json.loads((tmp_path / "out" / "failures" / "catalog" / "00398414.json").read_text())
    assert record["error"] == "CatalogError" and "bad_instcat.txt:41:" in record["message"]
    assert not list((tmp_path / "out").rglob("*.fits")) and not list((tmp_path / "out").rglob("*.parquet"))


def test_bad_config_value_is_named(tiny_catalog, tmp_path):
    proc = snakemake(tmp_path, "-n", *config_args([tiny_catalog], ["R00_S11"]), check=False)
    assert proc.returncode != 0 and "config key 'sensors'" in proc.stdout + proc.stderr
    proc = snakemake(tmp_path, "-n", *config_args([str(tmp_path / "nope*.txt")], R22), check=False)
    assert proc.returncode != 0 and "matches no file" in proc.stdout + proc.stderr


def _pixels(path):
    import hashlib

    with fits.open(path) as hdul:
        return hashlib.sha256(hdul[0].data.tobytes()).hexdigest()


def test_same_pixels_whatever_the_bundling(run, tiny_catalog, tmp_path):
    """One sensor per bundle instead of the default packing: identical images, another plan."""
    (tmp_path / "node.yaml").write_text("bundle: {node_cores: 1, node_memory_gb: 4.0}\n")
    snakemake(tmp_path, "--cores", "1", "--configfile", str(tmp_path / "node.yaml"), *config_args([tiny_catalog], R22))
    plans = [(d / "out" / "bundles" / "campaign.csv").read_text() for d in (run, tmp_path)]
    assert plans[0] != plans[1] and plans[1].count("\n") == 3     # header + one sensor per bundle
    for name in ("eimage_00001001-0-r-R22_S11-det094.fits", "eimage_00001001-0-r-R22_S12-det095.fits"):
        assert _pixels(run / "out" / "00001001" / name) == _pixels(tmp_path / "out" / "00001001" / name)


def test_sensor_bigger_than_a_node_is_named(tiny_catalog, tmp_path):
    (tmp_path / "node.yaml").write_text("bundle: {node_memory_gb: 0.6, visit_overhead_gb: 0.5}\n")
    proc = snakemake(tmp_path, "--cores", "2", "--configfile", str(tmp_path / "node.yaml"),
                     *config_args([tiny_catalog], ["R22_S11"]), check=False)
    assert proc.returncode != 0
    log = (tmp_path / "out" / "logs" / "bundle" / "campaign.log").read_text()
    assert "dc2flow bundle: error:" in log and "1001" in log and "R22_S11" in log
    assert not (tmp_path / "out" / "bundles" / "campaign.csv").exists()
    assert not list((tmp_path / "out").rglob("*.fits"))
