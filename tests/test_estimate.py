"""Estimates: features read off partitions, the model's predictions, the table format."""

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import run_stages
from dc2flow.errors import ConfigError
from dc2flow.estimate import (DEFAULT_MODEL, ESTIMATE_COLUMNS, FEATURES, ResourceModel, estimate_visit,
                              read_estimates, write_estimates)
from dc2flow.synthetic import make_catalog


@pytest.fixture(scope="module")
def visit(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("est")
    cat = make_catalog(outdir=tmp / "cat", visit=42, ra_deg=30.0, dec_deg=-45.0, band="g", seed=4, radius_deg=0.2,
                       star_density=2000.0, galaxy_density=20000.0, bright_stars=[(30.0, -45.0, 8.0)])
    return run_stages(tmp / "run", cat, ["R22_S11", "R22_S12", "R01_S00"], render=False)


def test_features_and_predictions(visit, tmp_path):
    model = ResourceModel.read()
    rows = {r["det_name"]: r for r in estimate_visit(visit["visit"], visit["partitions"], model, 1e5)}
    s11, s12, far = rows["R22_S11"], rows["R22_S12"], rows["R01_S00"]
    assert far["n_objects"] == 0 and far["fft_mpix"] == 0
    assert s11["n_objects"] > 0.1 and s11["max_fft_mpix"] > s12["max_fft_mpix"]   # the bright star is on S11
    assert s11["runtime_s"] > far["runtime_s"] and s11["mem_gb"] >= far["mem_gb"]
    assert far["image_mpix"] == pytest.approx(4072 * 4000 / 1e6)                     # ITL
    path = tmp_path / "e.tsv"
    write_estimates(path, list(rows.values()))
    assert path.read_text().splitlines()[0].split("\t") == list(ESTIMATE_COLUMNS)
    back = {r["det_name"]: r for r in read_estimates(path)}
    assert back["R22_S11"]["visit"] == 42 and back["R22_S11"]["mem_gb"] == pytest.approx(s11["mem_gb"], rel=1e-5)
    floored = {r["det_name"]: r["mem_gb"] for r in estimate_visit(visit["visit"], visit["partitions"], model, 1e5,
                                                                 job_overhead_gb=0.15, min_mem_gb=50.0)}
    assert floored == {name: pytest.approx(50.15) for name in rows}     # the floor, then the overhead
    # the atmospheric PSF: each render adds only what it holds itself; the screens it maps are the
    # visit's shared memory (visit_shared_gb), which the bundler counts once per visit in a bundle
    from dc2flow.atmpsf import AtmosphereSettings
    from dc2flow.config import load

    scene = load()["scene"]
    param = estimate_visit(visit["visit"], visit["partitions"], model, 1e5, scene=scene)
    assert {r["visit_shared_gb"] for r in param} == {0.0}
    atm_scene = {**scene, "psf_model": "atmospheric", "atmosphere": {"screen_size_m": 819.2, "screen_scale_m": 0.2}}
    atm = estimate_visit(visit["visit"], visit["partitions"], model, 1e5, scene=atm_scene)
    settings = AtmosphereSettings(819.2, 0.2)
    assert settings.shared_memory_gb == pytest.approx(6 * (4097**2 + 2 * 4097) * 8 / 1e9)   # 0.81 GB of files
    assert [a["mem_gb"] - p["mem_gb"] for a, p in zip(atm, param)] == pytest.approx(
        [settings.render_private_gb] * len(param))
    assert settings.render_private_gb < 0.2 * settings.build_memory_gb   # was the whole build, per sensor
    assert [r["visit_shared_gb"] for r in atm] == pytest.approx([settings.shared_memory_gb] * len(atm))
    path = tmp_path / "atm.tsv"
    write_estimates(path, atm)
    assert [r["visit_shared_gb"] for r in read_estimates(path)] == pytest.approx([0.806] * len(atm), abs=1e-3)


def test_sizes_are_the_run_s_camera_s(visit, small_e2v_policy, tmp_path):
    """image_mpix comes from the camera description of the options (camera.description), also through the CLI."""
    from dc2flow.camera import load_camera
    from dc2flow.cli import main

    model = ResourceModel.read()
    cam = load_camera(str(small_e2v_policy))            # e2v sensors of 2048 x 2002 pixels, ITL's as LSSTCam's
    rows = {r["det_name"]: r for r in estimate_visit(visit["visit"], visit["partitions"], model, 1e5, cam=cam)}
    assert rows["R22_S11"]["image_mpix"] == pytest.approx(2048 * 2002 / 1e6)
    assert rows["R01_S00"]["image_mpix"] == pytest.approx(4072 * 4000 / 1e6)
    visit["visit"].write_json(tmp_path / "visit.json")
    part_dir = str(Path(visit["partitions"]["R22_S11"]).parent)
    args = ["estimate", str(tmp_path / "visit.json"), "--partition-dir", part_dir, "--sensors", "R22_S11",
            "--job-overhead-gb", "0", "--min-mem-gb", "0"]
    assert main([*args, "--out", str(tmp_path / "lsstcam.tsv")]) == 0
    assert main([*args, "--out", str(tmp_path / "small.tsv"),
                 "--options", json.dumps({"camera": {"description": str(small_e2v_policy)}})]) == 0
    assert read_estimates(tmp_path / "lsstcam.tsv")[0]["image_mpix"] == pytest.approx(4096 * 4004 / 1e6, rel=1e-5)
    assert read_estimates(tmp_path / "small.tsv")[0]["image_mpix"] == pytest.approx(2048 * 2002 / 1e6, rel=1e-5)


def test_linear_model_and_scales():
    model = ResourceModel(mem_intercept_gb=0.2, runtime_intercept_s=1.0, mem_coef={"n_objects": 0.1},
                          runtime_coef={"phot_gphotons": 100.0}, mem_scale=1.5, runtime_scale=2.0)
    feats = {k: np.zeros(2) for k in FEATURES}
    feats["n_objects"] = np.array([0.0, 10.0])
    feats["phot_gphotons"] = np.array([0.01, 0.0])
    mem, run = model.predict(feats)
    np.testing.assert_allclose(mem, [0.3, 1.8])
    np.testing.assert_allclose(run, [4.0, 2.0])


def test_packaged_model_is_calibrated():
    model = ResourceModel.read(DEFAULT_MODEL)
    assert model.meta["records"] >= 30 and model.mem_scale >= 1.0 and model.runtime_scale >= 1.0
    assert set(model.mem_coef) <= set(FEATURES)


def test_bad_model_files(tmp_path):
    with pytest.raises(ConfigError, match="estimate.model.*file not found"):
        ResourceModel.read(tmp_path / "none.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"mem_intercept_gb": 1, "runtime_intercept_s": 1, "mem_coef": {"bogus": 1}}))
    with pytest.raises(ConfigError, match="unknown feature 'bogus'"):
        ResourceModel.read(bad)
    bad.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="not a resource model"):
        ResourceModel.read(bad)


def test_bad_estimates_table_is_named_with_file_and_line(tmp_path):
    """read_estimates is the one reader of estimates tables (bundle, forecast, calibration): it checks
    every value and names file:line."""
    import pytest

    from dc2flow.errors import EstimateError
    from dc2flow.estimate import ESTIMATE_COLUMNS, JOB_COLUMNS, read_estimates

    path = tmp_path / "00000001.tsv"
    good = "\t".join(["1", "0", "R22_S11", "0.5", "3.0"] + ["0"] * (len(ESTIMATE_COLUMNS) - 5))
    path.write_text("\t".join(ESTIMATE_COLUMNS) + "\n" + good + "\n" + good.replace("0.5", "lots") + "\n")
    with pytest.raises(EstimateError, match=r"00000001.tsv:3: column 'mem_gb' is not a finite number >= 0"):
        read_estimates(path)
    path.write_text("\t".join(ESTIMATE_COLUMNS) + "\n" + good.replace("0.5", "nan") + "\n")
    with pytest.raises(EstimateError, match=r"00000001.tsv:2: column 'mem_gb'"):
        read_estimates(path)
    path.write_text("visit\tsensor\tmem_gb\n1\tR22_S11\t0.5\n")
    with pytest.raises(EstimateError, match=r"00000001.tsv:1: missing column 'det_name' \('sensor' is its old name"):
        read_estimates(path)
    path.write_text("\t".join(ESTIMATE_COLUMNS) + "\n" + good.replace("R22_S11", "R00_S11") + "\n")
    with pytest.raises(EstimateError, match=r"00000001.tsv:2: column 'det_name' is not an LSSTCam science sensor"):
        read_estimates(path)
    jobs = tmp_path / "jobs.csv"
    jobs.write_text("visit,det_name,mem_gb\n7,R22_S11,1.5\n")
    assert read_estimates(jobs, JOB_COLUMNS) == [{"visit": 7, "snap": 0, "det_name": "R22_S11", "mem_gb": 1.5,   # no snap: 0
                                                 "runtime_s": 0.0, **{f: 0.0 for f in ESTIMATE_COLUMNS[5:]}}]
    jobs.write_text("visit,snap,det_name,mem_gb\n7,1,R22_S11,1.5\n7,1.5,R22_S11,1.5\n")
    with pytest.raises(EstimateError, match=r"jobs.csv:3: column 'snap' is not an integer >= 0"):
        read_estimates(jobs, JOB_COLUMNS)
    jobs.write_text("visit,snap,det_name,mem_gb\n7,1,R22_S11,1.5\n")
    from dc2flow.packing import read_jobs

    assert read_jobs(jobs)[0].exposure == (7, 1)


@pytest.mark.slow
def test_estimate_covers_the_largest_fft_the_parser_accepts(tmp_path):
    """A bright galaxy at the edge of what the parser accepts (Sersic n 6.2, 10" axes, kappa 0.45) makes GalSim's
    FFT k-image ~14,000^2 whatever its stamp: the sensor's estimate (with the visit's PSF) is at least
    the peak memory its real render takes; the fitted model alone is not."""

    import subprocess
    import sys

    from conftest import run_stages
    from dc2flow.estimate import DEFAULT_MODEL, ResourceModel, estimate_visit

    header = {"rightascension": "55.0", "declination": "-30.0", "mjd": "60000.1", "altitude": "60.0",
              "azimuth": "10.0", "filter": "2", "rotskypos": "0.0", "obshistid": "5001", "seed": "5001",
              "seeing": "0.7", "vistime": "30.0", "nsnap": "1"}
    cat = tmp_path / "phosim_cat_5001.txt"
    cat.write_text("".join(f"{k} {v}\n" for k, v in header.items())
                   + "object 1 55.0 -30.0 13.0 galaxySED/Exp.40E09.02Z.spec.gz 0.1 0 0 0.45 0 0 "
                     "sersic2d 10.0 10.0 0.0 6.2 CCM 0.1 3.1 CCM 0.05 3.1\n")
    det = "R22_S11"
    out = run_stages(tmp_path / "run", cat, [det], render=False)
    model = ResourceModel.read(DEFAULT_MODEL)
    floor = estimate_visit(out["visit"], out["partitions"], model, out["options"]["render"]["fft_flux_threshold"],
                           0.0, 0.0, out["options"]["scene"])[0]["mem_gb"]
    fitted = estimate_visit(out["visit"], out["partitions"], model, out["options"]["render"]["fft_flux_threshold"],
                            0.0, 0.0)[0]["mem_gb"]
    out["visit"].write_json(tmp_path / "visit.json")
    wrapper = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    dc2flow = str(__import__("pathlib").Path(sys.executable).parent / "dc2flow")
    proc = subprocess.run([sys.executable, "-c", wrapper, dc2flow, "render", str(tmp_path / "visit.json"),
                           out["partitions"][det], "--det-name", det, "--out", str(tmp_path / "x.fits"),
                           "--truth", str(tmp_path / "x.txt.gz")], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    peak_gb = int(proc.stdout.split()[-1]) * 1024 / 1e9
    assert peak_gb > 1.5, peak_gb                   # the case is what it says: a large FFT
    assert floor >= peak_gb, (floor, peak_gb)
    assert fitted < peak_gb, (fitted, peak_gb)      # what the estimate was before the floor
