"""Calibration: recovers a known model, errs high, and predicts real render jobs it did not see."""

import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO
from dc2flow.calibrate import Record, calibrate, error_figures, is_holdout, plot, read_records
from dc2flow.campaign import image_name
from dc2flow.errors import ConfigError
from dc2flow.estimate import FEATURES
from dc2flow.synthetic import make_catalog


def _records(n=60, noise=0.0, seed=1):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        f = {k: 0.0 for k in FEATURES}
        f.update(image_mpix=16.4, n_objects=rng.uniform(0, 20), phot_gphotons=rng.uniform(0, 0.01),
                 max_fft_mpix=rng.uniform(0, 4))
        mem = 0.05 + 0.01 * f["image_mpix"] + 0.1 * f["max_fft_mpix"]
        run = 1.0 + 0.5 * f["n_objects"] + 300 * f["phot_gphotons"]
        out.append(Record(1000 + i, "R22_S11", f, mem * (1 + noise * rng.normal()),
                          run * (1 + noise * rng.normal())))
    return out


def test_recovers_a_noiseless_model():
    model, report = calibrate(_records(), holdout=0.25)
    for what in ("mem", "runtime"):
        assert report["holdout"][what]["max_abs"] < 1e-6
    assert model.runtime_coef["n_objects"] == pytest.approx(0.5, rel=1e-6)


def test_errs_high_on_noisy_records():
    model, report = calibrate(_records(noise=0.05), holdout=0.0, quantile=0.95)
    assert model.mem_scale > 1.0 and report["train"]["mem"]["frac_under"] <= 0.06
    assert report["train"]["runtime"]["frac_under"] <= 0.06


def test_holdout_is_deterministic():
    recs = _records()
    assert [is_holdout(r, 0.3) for r in recs] == [is_holdout(r, 0.3) for r in recs]
    assert 0.1 < np.mean([is_holdout(r, 0.3) for r in recs]) < 0.6


def test_too_few_records():
    with pytest.raises(ConfigError, match="too few training records"):
        calibrate(_records(n=3), holdout=0.0)


# (stars/deg2, galaxies/deg2, bright stars (dRA, dDec from the boresight (20 + 10 visit, -20) in
# degrees, magnorm)); R22_S10 is centred 0.25 deg east, R22_S12 0.25 deg west, R22_S01 0.235 deg
# south and R22_S21 0.235 deg north of the boresight, with rotSkyPos 270 (+y north, east -x: a
# sensor's +y lands at PA 270 - rotSkyPos).  The same layout as benchmarks/calibrate_holdout.py.
ROTSKYPOS = 270.0
CAL_VISITS = [(300, 1000, [(-0.26, 0.01, 1.5)]),                       # on R22_S12 (training)
              (2000, 30000, [(0.26, -0.01, 1.0), (0.0, 0.245, 4.5)]),  # on R22_S10 (held out), R22_S21
              (5000, 80000, [(0.01, -0.245, 3.0)])]                    # on R22_S01 (training)
# The held-out jobs' peak memories are the renders' own high-water marks (getrusage, the .peak.json
# beside each benchmark), not Snakemake's once-a-second RSS sample, which missed the bright stars'
# sub-second FFT peaks (the ratio below then moved between 0.17 and 0.90 from run to run).  With the
# exact peaks the held-out jobs span 0.195-0.272 GB and the ratio was 0.34 and 0.33 in two runs
# (benchmarks/calibrate_holdout.py prints it); the test asserts 0.6.
MARGIN_OVER_INTERCEPT = 0.6


@pytest.mark.serial
def test_predicts_held_out_render_jobs(tmp_path):
    """Real render jobs of varied density and bright stars through Snakemake, one at a time; fit on
    four sensors of each visit and predict the fifth (R22_S10: sparse, medium with the brightest
    star of all, dense).  The scaled memory prediction must be within +-25% of each held-out job
    and under-predict none by more than 15%, and the fit must beat an intercept-only model (the
    training mean) on them by :data:`MARGIN_OVER_INTERCEPT`.  (Wall times move
    with the machine's load: their held-out errors are printed by benchmarks/calibrate_holdout.py,
    never asserted.)"""
    cats = []
    for visit, (stars, galaxies, bright) in enumerate(CAL_VISITS, start=1):
        ra, dec = 20.0 + 10 * visit, -20.0
        cats.append(make_catalog(outdir=tmp_path / "cats", visit=visit, ra_deg=ra, dec_deg=dec, band="gri"[visit - 1],
                                 seed=visit, rotskypos_deg=ROTSKYPOS, radius_deg=0.3, star_density=stars,
                                 galaxy_density=galaxies,
                                 bright_stars=[(ra + dra, dec + ddec, m) for dra, ddec, m in bright]))
    sensors = ["R22_S01", "R22_S10", "R22_S11", "R22_S12", "R22_S21"]
    estimates = [f"out/estimates/{v:08d}.tsv" for v in (1, 2, 3)]
    images = [f"out/{v:08d}/{image_name(v, band, d)}" for v, band in zip((1, 2, 3), "gri") for d in sensors]
    env = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]}
    subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path),
                    "--cores", "1", "--config", f"catalogs=[{','.join(cats)}]", f"sensors=[{','.join(sensors)}]",
                    "outdir=out", "--", *images, *estimates],  # renders only: no validation or registry
                   check=True, capture_output=True, env=env, timeout=900)
    records = read_records([str(tmp_path / "out" / "estimates")], [str(tmp_path / "out" / "benchmarks" / "render")])
    assert len(records) == 15
    train = [r for r in records if r.det_name != "R22_S10"]
    held = [r for r in records if r.det_name == "R22_S10"]
    brightest = max(records, key=lambda r: r.features["max_fft_mpix"])
    assert (brightest.visit, brightest.det_name) in {(2, "R22_S10"), (1, "R22_S12")}   # the clipped stamps
    assert held[1].features["max_fft_mpix"] > 3.0   # the held-out bright star: a 2049-px FFT stamp
    model, _ = calibrate(train, holdout=0.0)
    mem, run = model.predict({k: [r.features[k] for r in held] for k in FEATURES})
    measured = np.array([r.mem_gb for r in held])
    err = error_figures(mem, measured)
    assert err["frac_within_25pct"] == 1.0, (err, list(zip(mem, measured)))
    assert err["worst_under"] > -0.15, err
    # the features carry the memory: the fit (before its safety scale) beats the training mean
    fitted = np.mean(np.abs(mem / model.mem_scale - measured) / measured)
    constant = np.mean(np.abs(np.mean([r.mem_gb for r in train]) - measured) / measured)
    assert fitted <= MARGIN_OVER_INTERCEPT * constant, (fitted, constant, list(zip(mem, measured)))
    # the held-out bright star's job needs the most memory of the held-out three, by at least a good
    # part of its clipped 2049-px stamp's FFT (complex128, ~67 MB; measured +55 MB over the least)
    bright = held[1]
    assert bright.mem_gb == max(r.mem_gb for r in held), [r.mem_gb for r in held]
    assert bright.mem_gb - min(r.mem_gb for r in held) > 0.03, [r.mem_gb for r in held]
    assert np.all(np.isfinite(run)) and np.all(run > 0)   # wall time: a prediction, checked in benchmarks/
    plot(records, model, 0.0, str(tmp_path / "fit.png"))
    assert (tmp_path / "fit.png").stat().st_size > 10_000
