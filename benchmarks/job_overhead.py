"""Workflow overhead per sensor against its render time: what Snakemake and job start-up add.

    python benchmarks/job_overhead.py                 # rafts R22 and R21 of a typical-density visit
    python benchmarks/job_overhead.py --rafts R22 --workdir /tmp/ovh

Runs the whole pipeline locally with ``--profile profiles/local --cores 1`` (one job at a time, so
the driver's own time is what is left when every job's time is taken away) on one synthetic visit
of the standard benchmark scene's density (``render_vs_galsim.py --scene typical``), then prints:

- **driver**: the run's wall time minus the sum of every job's wall time (Snakemake's benchmark
  records): DAG building, scheduling, spawning jobs, checking outputs, per job and per sensor;
- **start-up**: what a render job spends before drawing: the Python interpreter and the imports of
  ``dc2flow render`` (median of 5 runs of those imports alone);
- **per-visit jobs**: the start-up of the visit's parse, partition, estimate, validation, mosaic
  and registration jobs, shared by its sensors;
- **render**: the median render job's wall time minus its start-up;
- on Slurm, each bundle job's start-up (the site's ``forecast.job_startup_s``) shared by the
  sensors of a bundle (``bundle.node_cores`` of them), for the profiles in ``profiles/``.

The overhead per sensor is driver + start-up + per-visit share (+ the Slurm share), against the
target of 5% of the render time.
"""

from __future__ import annotations

import argparse
import glob
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from dc2flow.io import read_benchmark

REPO = Path(__file__).resolve().parents[1]
IMPORTS = "import dc2flow.cli, dc2flow.render, dc2flow.registry, galsim, astropy.io.fits, pyarrow.parquet"


def startup_s(repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", IMPORTS], check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rafts", nargs="+", default=["R22", "R21"])
    ap.add_argument("--workdir", help="keep the run here [default: a temporary folder]")
    args = ap.parse_args(argv)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="dc2flow-ovh-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    dc2flow = os.path.join(os.path.dirname(sys.executable), "dc2flow")
    # the standard benchmark scene's densities (benchmarks/render_vs_galsim.py, SCENES["typical"])
    subprocess.run([dc2flow, "make-catalog", "--outdir", str(work / "cats"), "--visit", "1", "--ra-deg", "55",
                    "--dec-deg", "-30", "--band", "r", "--seed", "1", "--radius-deg", "1.1",
                    "--star-density", "2500", "--galaxy-density", "45000"], check=True, capture_output=True)
    sensors = [f"{raft}_S{a}{b}" for raft in args.rafts for a in range(3) for b in range(3)]
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(work),
           "--profile", str(REPO / "profiles" / "local"), "--cores", "1", "--scheduler", "greedy",
           "--config", f"catalogs=[{work / 'cats' / 'phosim_cat_1.txt'}]", f"sensors=[{','.join(sensors)}]",
           "outdir=out"]
    env = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]}
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env=env)
    wall = time.perf_counter() - t0
    records = glob.glob(str(work / "out" / "benchmarks" / "**" / "*.tsv"), recursive=True)
    jobs = {path: read_benchmark(path)["runtime_s"] for path in records}
    renders = [s for p, s in jobs.items() if f"{os.sep}render{os.sep}" in p]
    n, n_jobs = len(renders), len(jobs)
    start = startup_s()
    driver = wall - sum(jobs.values())
    render = statistics.median(renders) - start
    per_visit = (n_jobs - n) * start / n        # the other jobs' start-up, shared by the visit's sensors
    print(f"{n} sensors, {n_jobs} jobs, run wall {wall:.1f} s, sum of job wall times {sum(jobs.values()):.1f} s "
          f"(work folder {work})")
    print(f"render job wall: median {statistics.median(renders):.2f} s, min {min(renders):.2f} s, max {max(renders):.2f} s")
    print(f"start-up of a render job (python + imports, median of 5): {start:.2f} s")
    print(f"render proper (median job - start-up): {render:.2f} s")
    rows = [("driver (Snakemake outside jobs)", driver / n), ("render job start-up", start),
            ("per-visit jobs' start-up, shared", per_visit)]
    for what, secs in rows:
        print(f"  {what:36s} {secs:6.3f} s per sensor  {secs / render:6.1%} of the render")
    local = sum(s for _, s in rows)
    print(f"overhead per sensor, local: {local:.3f} s = {local / render:.1%} of the render "
          f"({'within' if local / render < 0.05 else 'NOT within'} the 5% target)")
    for node in sorted(glob.glob(str(REPO / "profiles" / "*" / "node.yaml"))):
        site = yaml.safe_load(open(node))
        cores = site["bundle"]["node_cores"]
        slurm_start = (site.get("forecast") or {}).get("job_startup_s", 30.0)
        share = slurm_start / cores
        total = local - driver / n + share     # on Slurm the driver's time is spent on the login node, in parallel
        print(f"  on {Path(node).parent.name:11s}: bundle start-up {slurm_start:g} s / {cores} sensors = {share:.3f} s "
              f"per sensor; with start-up and per-visit share {total:.3f} s = {total / render:.1%} of the render")
    return 0


if __name__ == "__main__":
    sys.exit(main())
