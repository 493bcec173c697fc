"""How well a calibrated resource model predicts render jobs it was not fitted on.

    python benchmarks/calibrate_holdout.py [--workdir /tmp/cal]

Three synthetic visits (sparse, medium, dense) x five R22 sensors are rendered by Snakemake one
job at a time (--cores 1: each benchmark record is one render alone).  Each visit has one bright
star on a training sensor, and the brightest star of all lies on the held-out sensor of the medium
visit: the model is fitted on four sensors of each visit and predicts the fifth (R22_S10), whose
bright-star job needs the most memory.  Prints, for memory and wall time, each held-out job's
predicted and measured figure, the relative errors, and the mean absolute relative error of the
fitted model (before its safety scale) beside that of an intercept-only model (the training
mean).  The test suite checks
the memory half (tests/test_calibrate.py uses the same layout); wall times move with the
machine's load, so they are measured here and never asserted.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from dc2flow.calibrate import calibrate, error_figures, read_records
from dc2flow.campaign import image_name
from dc2flow.estimate import FEATURES
from dc2flow.synthetic import make_catalog

REPO = Path(__file__).resolve().parents[1]
SENSORS = ["R22_S01", "R22_S10", "R22_S11", "R22_S12", "R22_S21"]
HELD = "R22_S10"
# (stars/deg2, galaxies/deg2, bright stars (dRA, dDec from the boresight in degrees, magnorm)):
# the boresight is (20 + 10 visit, -20); R22_S10 is centred 0.25 deg east, R22_S12 0.25 deg west,
# R22_S01 0.235 deg south and R22_S21 0.235 deg north of it.
VISITS = [(300, 1000, [(-0.26, 0.01, 1.5)]),                       # on R22_S12 (training)
          (2000, 30000, [(0.26, -0.01, 1.0), (0.0, 0.245, 4.5)]),  # on R22_S10 (held out), R22_S21
          (5000, 80000, [(0.01, -0.245, 3.0)])]                    # on R22_S01 (training)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", help="keep the run here [default: a temporary folder]")
    args = ap.parse_args(argv)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="dc2flow-cal-")).resolve()
    cats = []
    for visit, (stars, galaxies, bright) in enumerate(VISITS, start=1):
        ra, dec = 20.0 + 10 * visit, -20.0
        cats.append(make_catalog(outdir=work / "cats", visit=visit, ra_deg=ra, dec_deg=dec,
                                 band="gri"[visit - 1], seed=visit, rotskypos_deg=270.0, radius_deg=0.3,
                                 star_density=stars,
                                 galaxy_density=galaxies,
                                 bright_stars=[(ra + dra, dec + ddec, m) for dra, ddec, m in bright]))
    estimates = [f"out/estimates/{v:08d}.tsv" for v in (1, 2, 3)]
    images = [f"out/{v:08d}/{image_name(v, band, d)}" for v, band in zip((1, 2, 3), "gri") for d in SENSORS]
    env = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(work),
                    "--cores", "1", "--config", f"catalogs=[{','.join(cats)}]", f"sensors=[{','.join(SENSORS)}]",
                    "outdir=out", "--", *images, *estimates], check=True, capture_output=True, env=env)
    took = time.perf_counter() - start
    records = read_records([str(work / "out" / "estimates")], [str(work / "out" / "benchmarks" / "render")])
    train = [r for r in records if r.det_name != HELD]
    held = [r for r in records if r.det_name == HELD]
    model, _ = calibrate(train, holdout=0.0)
    mem, run = model.predict({k: [r.features[k] for r in held] for k in FEATURES})
    print(f"{len(records)} render jobs in {took:.0f} s; {len(train)} fitted, {len(held)} held out ({HELD} of "
          f"each visit); work folder {work}")
    for r in records:
        print(f"  {r.visit} {r.det_name}: {r.mem_gb:.3f} GB {r.runtime_s:.1f} s  max_fft_mpix "
              f"{r.features['max_fft_mpix']:.3g} phot_gphotons {r.features['phot_gphotons']:.3g}")
    for what, pred, meas, fitted, unit in (("memory", mem, [r.mem_gb for r in held], [r.mem_gb for r in train], "GB"),
                                           ("wall time", run, [r.runtime_s for r in held],
                                            [r.runtime_s for r in train], "s")):
        meas = np.asarray(meas)
        err = error_figures(np.asarray(pred), meas)
        scale = model.mem_scale if what == "memory" else model.runtime_scale
        mare = float(np.mean(np.abs(np.asarray(pred) / scale - meas) / meas))   # the fit, before erring high
        const = float(np.mean(np.abs(np.mean(fitted) - meas) / meas))
        pairs = ", ".join(f"{p:.3g}/{m:.3g}" for p, m in zip(pred, meas))
        print(f"{what:9s} predicted/measured ({unit}): {pairs}; median |err| {err['median_abs']:.1%}, "
              f"max |err| {err['max_abs']:.1%}, within 25%: {err['frac_within_25pct']:.0%}, "
              f"worst under-prediction {err['worst_under']:.1%}; mean |err| {mare:.1%} vs "
              f"{const:.1%} intercept-only (ratio {mare / const:.2f}; the fit before its safety scale)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
