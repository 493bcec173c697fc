#!/usr/bin/env python
"""Forecast vs measured: ``dc2flow forecast`` against a real run on the local Slurm test cluster.

What is measured
----------------
Three small synthetic visits of different density (a few sensors of raft R22 each) are forecast
with ``dc2flow forecast --profile profiles/ci-slurm``, then run by Snakemake through the same
profile on the one-node cluster of ``scripts/slurm-cluster.sh`` (started if it is not running,
and stopped again afterwards in that case).  Slurm's accounting (``sacct``: ``ElapsedRaw`` and
``AllocCPUS`` of every job; the rule of each job from Snakemake's submission lines) gives the
measured figures, computed the way the forecast defines them (``dc2flow.forecast``):

* node-hours = sum over bundle (group) jobs of Elapsed (a bundle holds a node) + sum over the
  other jobs of Elapsed x AllocCPUS / node CPUs;
* Slurm jobs = every job Snakemake submitted.

It prints, per kind of job and in total, forecast vs measured node-hours and job counts, their
ratio and whether node-hours are within +-25% (the target).  As diagnostics it also prints the
measured job start-up (the median over jobs of Elapsed minus the job's main command's benchmark
time: the value ``forecast.job_startup_s`` stands for; a bundle's main command is its slowest
render) and the renders' predicted vs measured wall time (the resource model on this machine).
Nothing is asserted; the exit status is 0 unless a step fails.

Usage::

    python benchmarks/forecast_vs_slurm.py                      # ~3 minutes on 2 cores
    python benchmarks/forecast_vs_slurm.py --workdir /tmp/fvs --sensors R22_S10,R22_S11
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROFILE = "profiles/ci-slurm"
SCRIPT = REPO / "scripts" / "slurm-cluster.sh"
SUBMITTED = re.compile(r"Job (\S+) has been submitted with SLURM jobid (\d+) \(log: (.+?)\)\.\n")
# (visit, seed, ra, dec, band, star density, galaxy density): sparse, medium and dense fields,
# other visits than the ones profiles/ci-slurm's job start-up was measured on (2001-2003).
VISITS = ((3001, 3001, 30.0, -35.0, "r", 500.0, 1000.0),
          (3002, 3002, 90.0, -15.0, "i", 3000.0, 15000.0),
          (3003, 3003, 150.0, -25.0, "z", 1000.0, 40000.0))
TARGET = 0.25


def env() -> dict:
    """This environment with this Python's bin/ first: Slurm jobs (sbatch --export=ALL) inherit it."""
    return {**os.environ, "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")}


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    print("$ " + " ".join(map(str, cmd)), flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env(), **kw)
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def make_catalogs(outdir: Path) -> list[str]:
    from dc2flow.synthetic import make_catalog

    return [make_catalog(outdir=outdir, visit=v, ra_deg=ra, dec_deg=dec, band=band, seed=seed, radius_deg=0.4,
                         star_density=stars, galaxy_density=galaxies)
            for v, seed, ra, dec, band, stars, galaxies in VISITS]


def sacct(ids: list[str]) -> dict[str, dict]:
    """JobID -> State, ElapsedRaw, AllocCPUS, once slurmdbd has recorded every job's end."""
    for _ in range(120):
        proc = subprocess.run(["sacct", "--noheader", "--parsable2", "--allocations",
                               "--format=JobID,State,ElapsedRaw,AllocCPUS", "--jobs", ",".join(ids)],
                              capture_output=True, text=True, timeout=30)
        got = {}
        for line in proc.stdout.splitlines():
            job, state, elapsed, cpus = line.split("|")
            got[job] = {"state": state, "elapsed_s": float(elapsed), "cpus": int(cpus)}
        if set(got) == set(ids) and all(g["state"] not in ("RUNNING", "PENDING") for g in got.values()):
            return got
        time.sleep(1.0)
    sys.exit(f"sacct did not record every job: {proc.stdout}")


def kind_of(log: str) -> tuple[str, str | None]:
    """(rule or 'bundle', visit or bundle name) of a submitted job, from its Slurm log's path."""
    parent = Path(log).parent
    if parent.name.startswith("group_"):
        return "bundle", parent.name.split("_")[1]
    return Path(log).parts[-3].removeprefix("rule_"), parent.name


def bench_s(path: Path, field: str = "runtime_s") -> float | None:
    from dc2flow.io import read_benchmark

    return read_benchmark(path)[field]       # None when the file is missing


class LoadSampler(threading.Thread):
    """The machine's 1-minute load average every few seconds while Snakemake runs: on a machine shared
    with processes outside Slurm, jobs get less than their CPUs and run longer than forecast."""

    def __init__(self, every_s: float = 5.0):
        super().__init__(daemon=True)
        self.every_s, self.samples, self.stop = every_s, [], threading.Event()

    def run(self):
        while not self.stop.wait(self.every_s):
            with open("/proc/loadavg") as fh:
                self.samples.append(float(fh.read().split()[0]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", help="keep catalogs, the run and the forecast here [default: a temporary folder]")
    parser.add_argument("--sensors", default="R22_S10,R22_S11,R22_S12,R22_S21", help="det_names rendered per visit")
    parser.add_argument("--model", help="resource model JSON for both the forecast and the run "
                                        "[default: the packaged one]")
    args = parser.parse_args(argv)

    started = subprocess.run(["bash", str(SCRIPT), "status"], capture_output=True).returncode != 0
    if started:
        run(["bash", str(SCRIPT), "start"], timeout=900)
    tmp = tempfile.TemporaryDirectory(prefix="forecast-vs-slurm-")
    work = Path(args.workdir or tmp.name).resolve()
    try:
        return measure(work, args.sensors, args.model)
    finally:
        if started:
            run(["bash", str(SCRIPT), "stop"], timeout=120)
        tmp.cleanup()


def measure(work: Path, sensors: str, model: str | None) -> int:
    catalogs = make_catalogs(work / "catalogs")
    model = str(Path(model).resolve()) if model else None
    t0 = time.monotonic()
    fc = json.loads(run([sys.executable, "-m", "dc2flow.cli", "forecast", *catalogs, "--profile", PROFILE,
                         "--sensors", sensors, "--nodes", "1", "--json", *(["--model", model] if model else [])],
                        cwd=REPO).stdout)
    print(f"forecast: {time.monotonic() - t0:.1f} s", flush=True)

    t0 = time.monotonic()
    load = LoadSampler()
    load.start()
    proc = run(["timeout", "-k", "10", "900", sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"),
                "-d", str(work / "wf"), "--profile", PROFILE, "--config", f"catalogs=[{','.join(catalogs)}]",
                f"sensors=[{sensors}]", "outdir=out", *([f"estimate={{model: {model}}}"] if model else [])],
               cwd=REPO, timeout=960)
    load.stop.set()
    print(f"snakemake on Slurm: {time.monotonic() - t0:.1f} s", flush=True)
    (work / "snakemake.log").write_text(proc.stdout + proc.stderr)
    submitted = [(sid, *kind_of(log)) for _, sid, log in SUBMITTED.findall(proc.stdout + proc.stderr)]
    acct = sacct([sid for sid, _, _ in submitted])

    node_cpus = fc["site"]["node_cores"]
    out = work / "wf" / "out"
    measured: dict[str, dict] = {}
    overheads, pred_render, meas_render = [], [], []
    from dc2flow.campaign import bundle_members
    from dc2flow.estimate import read_estimates

    # (visit, det_name) per bundle member: instance catalogs, snap 0 only
    members = {b: [(v, d) for v, _snap, d in ms] for b, ms in bundle_members(str(out / "bundles" / "campaign.csv")).items()}
    estimates = {(r["visit"], r["det_name"]): r for p in (out / "estimates").glob("*.tsv") for r in read_estimates(p)}
    render_s, render_cpu = {}, {}
    for p in (out / "benchmarks" / "render").glob("*/*.tsv"):
        m = re.search(r"(\d{8})/[a-z]-(R\d\d_S\d\d)-det", str(p))
        render_s[(int(m[1]), m[2])] = bench_s(p)
        render_cpu[(int(m[1]), m[2])] = bench_s(p, "cpu_time_s")
    unloaded_h = 0.0   # node-hours with each bundle's slowest render at its CPU time (a diagnostic)
    for sid, kind, where in submitted:
        a = acct[sid]
        share = 1.0 if kind == "bundle" else a["cpus"] / node_cpus
        m = measured.setdefault(kind, {"jobs": 0, "node_hours": 0.0})
        m["jobs"] += 1
        m["node_hours"] += a["elapsed_s"] * share / 3600.0
        if kind != "bundle":
            unloaded_h += a["elapsed_s"] * share / 3600.0
        if kind == "bundle":
            slowest = max(render_s[k] for k in members[where])
            overheads.append(a["elapsed_s"] - slowest)
            key = max(members[where], key=lambda k: render_s[k])
            unloaded_h += (a["elapsed_s"] - (render_s[key] - render_cpu[key])) / 3600.0
            pred_render.append(max(estimates[k]["runtime_s"] for k in members[where]))
            meas_render.append(slowest)
            continue
        stage = {"parse_catalog": f"catalog/{where}.tsv", "partition_visit": f"partition/{where}.tsv",
                 "estimate_visit": f"estimate/{where}.tsv", "mosaic_visit": f"validation/{where}/mosaic.tsv",
                 "validate_visit": f"validation/{where}.tsv"}.get(kind)
        secs = bench_s(out / "benchmarks" / stage) if stage else None
        if secs is not None:
            overheads.append(a["elapsed_s"] - secs)

    # the forecast, per kind of job, the same way
    visits, startup = fc["campaign"]["visits"], fc["site"]["job_startup_s"]
    share = fc["site"]["cpus_per_job"] / node_cpus
    ours = fc["dc2flow"]
    forecast = {"bundle": {"jobs": ours["bundles"], "node_hours": ours["node_hours_bundles"]}}
    for rule in fc["per_visit_slurm_jobs"]:
        forecast[rule] = {"jobs": visits,
                          "node_hours": visits * (fc["per_visit_runtime_s"][rule] + startup) * share / 3600.0}

    print()
    print(f"{'job kind':18s} {'jobs fc':>8s} {'jobs meas':>9s} {'node-h fc':>10s} {'node-h meas':>11s} {'ratio':>6s}")
    for kind in ["bundle", *fc["per_visit_slurm_jobs"], *sorted(set(measured) - set(forecast))]:
        f, m = forecast.get(kind), measured.get(kind)
        ratio = f"{f['node_hours'] / m['node_hours']:.2f}" if f and m and m["node_hours"] else "-"
        print(f"{kind:18s} {f['jobs'] if f else '-':>8} {m['jobs'] if m else '-':>9} "
              f"{f['node_hours'] if f else 0:>10.4f} {m['node_hours'] if m else 0:>11.4f} {ratio:>6s}")
    total_f, total_m = ours["node_hours"], sum(m["node_hours"] for m in measured.values())
    jobs_f, jobs_m = ours["slurm_jobs"], sum(m["jobs"] for m in measured.values())
    ratio = total_f / total_m
    print(f"{'total':18s} {jobs_f:>8} {jobs_m:>9} {total_f:>10.4f} {total_m:>11.4f} {ratio:>6.2f}")
    print()
    print(f"node-hours: forecast {total_f:.4f}, measured {total_m:.4f}, ratio {ratio:.2f}: "
          f"{'within' if abs(ratio - 1) <= TARGET else 'NOT within'} +-{TARGET:.0%}")
    print(f"Slurm jobs: forecast {jobs_f}, measured {jobs_m}")
    print(f"job start-up (median of Elapsed - main command's benchmark s over {len(overheads)} jobs): "
          f"{statistics.median(overheads):.1f} s measured, {startup:g} s in the profile")
    print(f"renders: slowest member per bundle, predicted {sum(pred_render):.1f} s, measured {sum(meas_render):.1f} s "
          f"(ratio {sum(pred_render) / sum(meas_render):.2f})")
    pred_all = sum(estimates[k]["runtime_s"] for k in render_s)
    print(f"renders: all {len(render_s)}, predicted {pred_all:.1f} s, measured wall {sum(render_s.values()):.1f} s, "
          f"CPU {sum(render_cpu.values()):.1f} s (CPU / wall {sum(render_cpu.values()) / sum(render_s.values()):.2f})")
    print(f"diagnostic: measured node-hours with each bundle's slowest render at its CPU time (no outside load "
          f"on the renders) {unloaded_h:.4f}, forecast / that {total_f / unloaded_h:.2f}")
    if load.samples:
        print(f"load average during the run: mean {statistics.mean(load.samples):.2f}, max {max(load.samples):.2f} "
              f"on {os.cpu_count()} CPUs (Slurm's own jobs use at most {node_cpus})")
    print(f"DC2 flat rule (forecast): {fc['dc2_flat']['bundles']} bundles, {fc['dc2_flat']['node_hours']:.4f} node-hours")
    disk = sum(p.stat().st_size for d in ("catalog", "partitions") for p in (out / d).rglob("*") if p.is_file())
    images = sum(p.stat().st_size for p in out.glob("0000????/*") if p.is_file())
    fd = fc["disk_gb"]
    print(f"disk (GB): images + truth forecast {fd['images'] + fd['truth_tables']:.4f}, measured {images / 1e9:.4f}; "
          f"catalog + partitions forecast {fd['catalogs'] + fd['partitions']:.4f}, measured {disk / 1e9:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
