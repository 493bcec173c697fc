"""End to end on a real Slurm cluster: the workflow through profiles/ci-slurm.

The cluster is one node on 127.0.0.1 started by scripts/slurm-cluster.sh (which installs Slurm
with apt when missing, so it needs root there). Off CI a cluster that cannot start skips the
module; on CI (CI=true) it fails it.

One test only, on purpose: under pytest-xdist a module-scoped fixture runs once per worker, and
a worker that started the cluster would stop it under another worker's test.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
from astropy.io import fits

from conftest import PROFILE, REPO, SUBMITTED, env_with_venv

pytestmark = pytest.mark.slow


RENDER_LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) dc2flow\.render INFO: \d+ \S+: (started|\{)",
                             re.MULTILINE)


def render_interval(out: Path, visit: int, snap: int, det_name: str) -> tuple[float, float]:
    """(start, end) of a render in seconds, as the render process logged them (``dc2flow.render``
    logs "started" on entry and its summary after writing the image). Both lie inside the job's
    run, so two logged intervals overlap only if the jobs did. Not file mtimes: Snakemake's driver
    touches a group job's outputs, benchmark records included, after the whole group ends."""
    from dc2flow.campaign import exposure_key

    (log,) = (out / "logs" / "render" / exposure_key(visit, snap)).glob(f"*-{det_name}-det*.log")
    stamps = {kind: datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
              for stamp, kind in RENDER_LOG_LINE.findall(log.read_text())}
    assert set(stamps) == {"started", "{"}, f"{log}: no start and end lines:\n{log.read_text()[-2000:]}"
    start, end = stamps["started"], stamps["{"]
    (bench,) = (out / "benchmarks" / "render" / exposure_key(visit, snap)).glob(f"*-{det_name}-det*.tsv")
    header, row = bench.read_text().splitlines()[:2]
    wall_s = float(dict(zip(header.split("\t"), row.split("\t")))["s"])  # the whole command's wall time
    assert 0 < end - start <= wall_s + 0.01, (log, start, end, wall_s)
    return start, end


def test_bundles_run_as_one_slurm_job_each(slurm_cluster, tiny_catalog, tmp_path):
    """Two visits x three sensors: per-visit jobs go to Slurm one by one, and every bundle of the
    plan is exactly one Slurm job holding its renders, requesting the planned cores and memory,
    whose renders ran side by side (every two members of a bundle overlapped in time)."""
    from dc2flow.campaign import bundle_members, exposure_key, render_requests
    from dc2flow.synthetic import make_catalog

    other = make_catalog(outdir=tmp_path / "cat2", visit=1002, ra_deg=80.0, dec_deg=-10.0, band="i", seed=1002,
                         radius_deg=0.3)
    work = tmp_path / "wf"
    cmd = ["timeout", "-k", "10", "600",  # a run killed with SIGTERM under the plugin may hang
           sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(work),
           "--profile", str(PROFILE.relative_to(REPO)),
           "--config", f"catalogs=[{tiny_catalog},{other}]", "sensors=[R22_S10,R22_S11,R22_S12]", "outdir=out"]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env_with_venv(), cwd=REPO, timeout=660)
    elapsed = time.monotonic() - t0
    output = proc.stdout + proc.stderr
    (tmp_path / "snakemake.log").write_text(output)
    slurm_logs = sorted((work / ".snakemake" / "slurm_logs").rglob("*.log"))
    if proc.returncode != 0:
        tails = "".join(f"--- {p}\n{p.read_text()[-1500:]}\n" for p in slurm_logs)
        raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode} after {elapsed:.0f} s:\n"
                             f"{output[-6000:]}\n{tails}")
    print(f"snakemake on Slurm: {elapsed:.1f} s")

    images = sorted((work / "out").glob("0000100?/eimage_*.fits"))
    assert len(images) == 6
    for image in images:
        with fits.open(image, checksum=True) as hdul:
            assert hdul[0].verify_checksum() == 1 and hdul[0].data.any()

    submitted = SUBMITTED.findall(output)
    logs = {Path(log) for _, _, log in submitted}
    assert logs == set(slurm_logs)
    for log in logs:
        assert "--executor slurm-jobstep" in log.read_text(), log  # Snakemake ran inside the job
    by_kind: dict[str, list[tuple[str, Path]]] = {}
    for _, slurm_id, log in submitted:
        kind = Path(log).parent.name if Path(log).parent.name.startswith("group_") else Path(log).parts[-3]
        by_kind.setdefault(kind, []).append((slurm_id, Path(log)))
    # per-visit stages: one Slurm job per visit; no render was ever submitted on its own
    for rule in ("rule_parse_catalog", "rule_partition_visit", "rule_estimate_visit", "rule_validate_visit",
                 "rule_mosaic_visit"):
        assert len(by_kind.pop(rule)) == 2, rule
    for rule in ("rule_render_sensor", "rule_register_visit", "rule_plot_resources"):
        assert rule not in by_kind, rule       # in their bundle's job, or local rules

    plan = str(work / "out" / "bundles" / "campaign.csv")
    members = bundle_members(plan)
    requests = render_requests(plan)
    groups = {kind.split("_")[1]: jobs for kind, jobs in by_kind.items()}
    assert set(groups) == set(members) and all(len(jobs) == 1 for jobs in groups.values()), by_kind
    assert len(members) >= 3                                   # 6 sensors, at most 2 per node

    # the members of each bundle ran at the same time, not one after another inside their job
    # (snakemake-executor-plugin-slurm #469: a group job's Snakemake runs with `--jobs 1`)
    multi = {bundle: m for bundle, m in members.items() if len(m) >= 2}
    assert multi, members
    for bundle, group in multi.items():
        spans = {member: render_interval(work / "out", *member) for member in group}
        for a, b in ((a, b) for i, a in enumerate(group) for b in group[i + 1:]):
            (start_a, end_a), (start_b, end_b) = spans[a], spans[b]
            overlap = min(end_a, end_b) - max(start_a, start_b)
            assert overlap > 0, (f"bundle {bundle}: {a} ran {start_a:.2f}-{end_a:.2f} and {b} ran "
                                 f"{start_b:.2f}-{end_b:.2f} (s): one after another, not side by side")
        print(f"bundle {bundle}: members overlap by "
              f"{min(e for _, e in spans.values()) - max(s for s, _ in spans.values()):.2f} s "
              f"of {max(e - s for s, e in spans.values()):.2f} s")

    # each bundle is one job in Slurm's accounting (sacct), which asked for its members' cores and
    # the planned memory, and ran them all
    ids = {bundle: jobs[0][0] for bundle, jobs in groups.items()}
    for _ in range(60):  # slurmdbd records a job's end a few seconds after slurmctld
        acct = subprocess.run(["sacct", "--noheader", "--parsable2", "--allocations",
                               "--format=JobID,State,AllocCPUS,ReqMem", "--jobs", ",".join(ids.values())],
                              capture_output=True, text=True, timeout=30)
        assert acct.returncode == 0, acct.stderr
        got = {line.split("|")[0]: line.split("|")[1:] for line in acct.stdout.splitlines()}
        if len(got) == len(ids) and all(v[0] == "COMPLETED" for v in got.values()):
            break
        time.sleep(0.5)
    assert set(got) == set(ids.values()), acct.stdout
    for bundle, slurm_id in ids.items():
        state, cpus, mem = got[slurm_id]
        planned = sum(requests[m].mem_mb for m in members[bundle])
        assert (state, int(cpus), int(mem.rstrip("M"))) == ("COMPLETED", len(members[bundle]), planned), bundle
        assert (work / "out" / "bundles" / "done" / f"{bundle}.tsv").exists()
        for visit, snap, det_name in members[bundle]:          # and wrote its registry records
            key = exposure_key(visit, snap)
            assert list((work / "out" / "registry" / "records" / key).glob(f"*-{det_name}-*.json"))
            assert (work / "out" / "validation" / key / f"{det_name}.json").exists()
