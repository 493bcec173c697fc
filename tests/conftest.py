"""Shared fixtures: the shared imSim data folder and small synthetic scenes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "imsim"
SED_DIR = SHARED / "sed_library"

# --- the one-node Slurm test cluster (tests/test_slurm*.py) ---------------------------------------
SCRIPT = REPO / "scripts" / "slurm-cluster.sh"
PROFILE = REPO / "profiles" / "ci-slurm"
BIN = str(Path(sys.executable).parent)
ON_CI = os.environ.get("CI") == "true"
# Tests of real components (the Slurm cluster, chromium, PostgreSQL) fail when their set-up fails;
# DC2FLOW_ALLOW_SKIP=1 (never set on CI) turns that into a skip, for a machine that cannot have them.
ALLOW_SKIP = os.environ.get("DC2FLOW_ALLOW_SKIP") == "1" and not ON_CI


def setup_failed(reason: str):
    """A real component could not be set up: fail, or skip under DC2FLOW_ALLOW_SKIP=1."""
    if ALLOW_SKIP:
        pytest.skip(reason)
    pytest.fail(f"{reason}\n(set DC2FLOW_ALLOW_SKIP=1 to skip such tests on a machine that cannot run them)")
SUBMITTED = re.compile(r"Job (\S+) has been submitted with SLURM jobid (\d+) \(log: (.+?)\)\.\n")


def env_with_venv() -> dict:
    """This environment with this Python's bin/ first: the jobs (sbatch --export=ALL) inherit it."""
    return {**os.environ, "PATH": BIN + os.pathsep + os.environ.get("PATH", "")}


def cluster(command: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), command], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def slurm_cluster():
    """A running test cluster; stopped afterwards only if this fixture started it."""
    was_running = cluster("status").returncode == 0
    if not was_running:
        try:
            proc = cluster("start", timeout=600)  # the first start installs Slurm with apt
        except (OSError, subprocess.TimeoutExpired) as exc:
            proc = subprocess.CompletedProcess([str(SCRIPT), "start"], 1, "", repr(exc))
        if proc.returncode != 0:
            reason = f"{SCRIPT.name} start failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}{proc.stderr[-4000:]}"
            setup_failed(reason)
    yield
    if not was_running:
        stopped = cluster("stop")
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr


def needs_shared():
    return pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared imSim data not found at {SHARED}")


# --- camera descriptions other than the packaged LSSTCam (config camera.description) --------------
OBS_LSST = SHARED.parent / "obs_lsst" / "policy"
PERTURBED_DET = "R22_S11"
PERTURBED_OFFSET_MM = (1.6, -0.96)   # large, so that a mosaic at bin 32 (0.32 mm) shows it: 5 and 3 pixels
PERTURBED_YAW_DEG = 0.02
_NOMINAL_S11 = "    S11 : {\n      offset : [0.0, 0.0],\n      yaw : 0.0,"


def edited_policy(dest: Path, edits: dict[str, tuple[str, str]]) -> Path:
    """A copy of obs_lsst's policy folder at ``dest`` with ``file -> (old, new)`` text edits (each
    ``old`` must occur in the file; its first occurrence is replaced)."""
    import shutil

    if not OBS_LSST.is_dir():
        pytest.skip(f"obs_lsst's policy files not found at {OBS_LSST}")
    shutil.copytree(OBS_LSST, dest)
    for name, (old, new) in edits.items():
        text = (dest / name).read_text()
        assert old in text, (name, old)
        (dest / name).write_text(text.replace(old, new, 1))
    return dest


@pytest.fixture(scope="session")
def perturbed_policy(tmp_path_factory) -> Path:
    """obs_lsst's policy with R22_S11 moved and turned within its raft, as DC2's policy/imsim files
    perturb sensors (by PERTURBED_OFFSET_MM and PERTURBED_YAW_DEG)."""
    x, y = PERTURBED_OFFSET_MM
    moved = f"    S11 : {{\n      offset : [{x}, {y}],\n      yaw : {PERTURBED_YAW_DEG},"
    return edited_policy(tmp_path_factory.mktemp("camera") / "perturbed", {"lsstCam/R22.yaml": (_NOMINAL_S11, moved)})


@pytest.fixture(scope="session")
def small_e2v_policy(tmp_path_factory) -> Path:
    """obs_lsst's policy with e2v sensors of 2048 x 2002 pixels (a quarter of LSSTCam's), centred as before."""
    block = ("CCD_E2V : &CCD_E2V\n    detectorType : 0\n    refpos : [2047.5, 2001.5]\n    offset : [.nan, .nan]\n"
             "    # This is the orientation we need to put the serial direction along the x-axis\n"
             "    bbox : [[0, 0], [4095, 4003]]")
    small = block.replace("[2047.5, 2001.5]", "[1023.5, 1000.5]").replace("[4095, 4003]", "[2047, 2001]")
    return edited_policy(tmp_path_factory.mktemp("camera") / "small_e2v", {"cameraHeader.yaml": (block, small)})


def synthetic_visit(ra0: float, dec0: float, rot: float, band: str = "r", **kwargs):
    """The Visit a synthetic catalog of this pointing has (its header, read back)."""
    import tempfile

    from dc2flow.catalog import read_header
    from dc2flow.synthetic import make_catalog

    with tempfile.TemporaryDirectory() as tmp:
        path = make_catalog(outdir=tmp, visit=kwargs.pop("visit", 1), ra_deg=ra0, dec_deg=dec0, band=band,
                            seed=kwargs.pop("seed", 1), rotskypos_deg=rot, star_density=0.0, galaxy_density=0.0,
                            radius_deg=0.01, **kwargs)
        return read_header(path)


def pixel_to_sky(det_name: str, ra0: float, dec0: float, rot: float, x, y, band: str = "r", **kwargs):
    """RA/Dec (deg) of eimage pixel positions of a synthetic visit of this pointing, through the
    sensor's ray-traced TAN-SIP WCS (dc2flow.wcs, the one its header gets)."""
    from dc2flow import camera, wcs

    visit = synthetic_visit(ra0, dec0, rot, band, **kwargs)
    sip = wcs.for_visit(visit).sensor_wcs(camera.get_sensor(det_name))
    return sip.xyToradec(np.atleast_1d(np.asarray(x, float)), np.atleast_1d(np.asarray(y, float)), units="deg")


def run_stages(tmp: Path, catalog: str | os.PathLike, sensors: list[str], options: dict | None = None,
               render: bool = True) -> dict:
    """parse -> partition -> render through the package API; returns the paths made."""
    from dc2flow.catalog import Visit, read_catalog
    from dc2flow.config import load, merge, options_hash, physics_options
    from dc2flow.partition import partition_visit
    from dc2flow.render import Provenance, render_sensor

    opts = physics_options(load())
    if options:
        opts = merge(opts, options)
    tmp.mkdir(parents=True, exist_ok=True)
    visit, _ = read_catalog(catalog, objects_out=tmp / "objects.parquet")
    visit.write_json(tmp / "visit.json")
    visit = Visit.read_json(tmp / "visit.json")
    parts = {s: str(tmp / "partitions" / f"{s}.parquet") for s in sensors}
    partition_visit(visit, tmp / "objects.parquet", parts, opts)
    out = {"visit": visit, "partitions": parts, "options": opts, "images": {}, "truth": {}}
    if render:
        for s in sensors:
            out["images"][s] = str(tmp / f"{s}.fits")
            out["truth"][s] = str(tmp / f"{s}.txt.gz")
            render_sensor(visit, parts[s], s, opts, out["images"][s], out["truth"][s],
                          Provenance(config_hash=options_hash(opts)))
    return out


@pytest.fixture(scope="session")
def tiny_catalog(tmp_path_factory) -> str:
    """A tiny synthetic visit around R22 (CI's catalog)."""
    from dc2flow.synthetic import make_catalog

    return make_catalog(outdir=tmp_path_factory.mktemp("tiny"), visit=1001, ra_deg=55.0, dec_deg=-30.0,
                        band="r", seed=1001, radius_deg=0.3)


# --- one small campaign run by real Snakemake, shared by the registry and viewer tests ------------
REGISTRY_SENSORS = ["R22_S11", "R22_S12"]


def run_snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env_with_venv(), timeout=600)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def campaign_args(catalog) -> list[str]:
    return ["--cores", "2", "--config", f"catalogs=[{catalog}]", f"sensors=[{','.join(REGISTRY_SENSORS)}]",
            "outdir=out"]


@pytest.fixture(scope="session")
def registered_campaign(tiny_catalog, tmp_path_factory) -> Path:
    """A finished two-sensor campaign (rendered and registered by Snakemake); its output root."""
    work = tmp_path_factory.mktemp("campaign")
    run_snakemake(work, *campaign_args(tiny_catalog))
    return work
