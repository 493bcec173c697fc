"""Estimates: features read off partitions, the model's predictions, the table format."""

import json

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
    good = "\t".join(["1", "R22_S11", "0.5", "3.0"] + ["0"] * (len(ESTIMATE_COLUMNS) - 4))
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
    assert read_estimates(jobs, JOB_COLUMNS) == [{"visit": 7, "det_name": "R22_S11", "mem_gb": 1.5, "runtime_s": 0.0,
                                                 **{f: 0.0 for f in ESTIMATE_COLUMNS[4:]}}]
