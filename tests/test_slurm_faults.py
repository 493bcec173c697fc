"""Faults on the real Slurm test cluster: the workflow through profiles/ci-slurm recovers from an
out-of-memory kill, a cancelled bundle job, a killed Snakemake driver and a drained node.

The cluster is the one of tests/test_slurm.py (scripts/slurm-cluster.sh, one node on 127.0.0.1);
off CI a cluster that cannot start skips the module, on CI (CI=true) it fails it.

All tests are `serial`: `make test` runs them alone, after the parallel tests, so no other test
shares (or stops) the cluster; the module-scoped fixture then runs once, in one process.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from astropy.io import fits

from conftest import PROFILE, REPO, SUBMITTED, env_with_venv

pytestmark = [pytest.mark.slow, pytest.mark.serial]


# --- helpers ------------------------------------------------------------------------------------

def snakemake_cmd(work: Path, catalog: str, sensors: list[str], *extra: str) -> list[str]:
    return ["timeout", "-k", "10", "600",  # a run killed with SIGTERM under the plugin may hang
            sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(work),
            "--profile", str(PROFILE.relative_to(REPO)), *extra,
            "--config", f"catalogs=[{catalog}]", f"sensors=[{','.join(sensors)}]", "outdir=out"]


class Run:
    """Snakemake in the background (its own session: the whole process group can be killed),
    its output going to a file that can be read while it runs."""

    def __init__(self, cmd: list[str], log: Path):
        self.cmd, self.log = cmd, log
        self._out = open(log, "w")
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdout=self._out, stderr=subprocess.STDOUT, env=env_with_venv(),
                                     cwd=REPO, start_new_session=True)

    def output(self) -> str:
        return self.log.read_text()

    def submitted(self) -> list[tuple[str, str, Path]]:
        return [(job, slurm_id, Path(log)) for job, slurm_id, log in SUBMITTED.findall(self.output())]

    def wait(self, timeout: float = 660) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self._out.close()

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self._out.close()

    def check(self, work: Path) -> None:
        code = self.wait()
        elapsed = time.monotonic() - self.t0
        if code != 0:
            logs = sorted((work / ".snakemake" / "slurm_logs").rglob("*.log"))
            tails = "".join(f"--- {p}\n{p.read_text()[-1500:]}\n" for p in logs)
            raise AssertionError(f"{' '.join(self.cmd)} exited {code} after {elapsed:.0f} s:\n"
                                 f"{self.output()[-6000:]}\n{tails}")
        print(f"snakemake on Slurm: {elapsed:.1f} s")


def run(cmd: list[str], work: Path, log: Path) -> Run:
    r = Run(cmd, log)
    r.check(work)
    return r


def states(ids) -> dict[str, str]:
    """Slurm job id -> state (finished jobs are kept MinJobAge=300 s)."""
    ids = list(ids)
    if not ids:
        return {}
    proc = subprocess.run(["squeue", "--states=all", "--noheader", "--format=%i %T", "--jobs", ",".join(ids)],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return dict(line.split()[:2] for line in proc.stdout.splitlines() if line.strip())


def requested_mem(ids) -> dict[str, str]:
    """Slurm job id -> its memory request (squeue %m, e.g. 2000M)."""
    ids = list(ids)
    proc = subprocess.run(["squeue", "--states=all", "--noheader", "--format=%i %m", "--jobs", ",".join(ids)],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return dict(line.split()[:2] for line in proc.stdout.splitlines() if line.strip())


def mb(text: str) -> float:
    return float(text[:-1]) * {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024**2}[text[-1]]


def group_jobs(r: Run) -> dict[str, list[str]]:
    """bundle -> its Slurm job ids in submission order."""
    out: dict[str, list[str]] = {}
    for _, slurm_id, log in r.submitted():
        if log.parent.name.startswith("group_"):
            out.setdefault(log.parent.name.split("_")[1], []).append(slurm_id)
    return out


def wait_for(predicate, what: str, timeout: float = 300, run: Run | None = None):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        value = predicate()
        if value:
            return value
        if run is not None and run.proc.poll() is not None:
            raise AssertionError(f"snakemake ended ({run.proc.returncode}) before {what}:\n{run.output()[-6000:]}")
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}"
                         + (f":\n{run.output()[-6000:]}" if run else ""))


def running_group_job(r: Run, exclude=()) -> tuple[str, str] | None:
    """(bundle, slurm id) of a bundle job that Slurm runs now."""
    jobs = {slurm_id: bundle for bundle, ids in group_jobs(r).items() for slurm_id in ids if slurm_id not in exclude}
    for slurm_id, state in states(jobs).items():
        if state == "RUNNING":
            return jobs[slurm_id], slurm_id
    return None


def images(work: Path) -> list[Path]:
    return sorted((work / "out").glob("0000100?/eimage_*.fits"))


def check_images(work: Path, n: int) -> None:
    found = images(work)
    assert len(found) == n, found
    for image in found:
        with fits.open(image, checksum=True) as hdul:
            assert hdul[0].verify_checksum() == 1 and hdul[0].data.any(), image
    partial = [p for p in (work / "out").rglob(".*.tmp-*")]
    assert not partial, partial


# --- tests --------------------------------------------------------------------------------------

def test_out_of_memory_render_is_retried_with_more_memory(slurm_cluster, tiny_catalog, tmp_path):
    """A resource model that predicts 50 MB per sensor: the bundle job is killed by Slurm for
    exceeding --mem, comes back with retry_memory_growth times the memory and succeeds."""
    model = tmp_path / "tiny-model.json"
    model.write_text('{"mem_intercept_gb": 0.05, "runtime_intercept_s": 5, "mem_coef": {}, "runtime_coef": {},'
                     ' "mem_scale": 1.0, "runtime_scale": 1.0, "meta": {}}')
    config = tmp_path / "oom.yaml"
    # A --configfile on the command line replaces the profile's `configfiles` (node.yaml): repeat it.
    settings = yaml.safe_load((PROFILE / "node.yaml").read_text())
    settings["bundle"].update(visit_overhead_gb=0.0, retry_memory_growth=10.0)
    settings["estimate"] = {"model": str(model), "job_overhead_gb": 0.0, "min_mem_gb": 0.0}
    config.write_text(yaml.safe_dump(settings))
    work = tmp_path / "wf"
    r = run(snakemake_cmd(work, tiny_catalog, ["R22_S11", "R22_S12"], "--configfile", str(config)),
            work, tmp_path / "snakemake.log")
    check_images(work, 2)

    groups = group_jobs(r)
    assert len(groups) == 1, groups  # two sensors, one two-core bundle
    (bundle, ids), = groups.items()
    assert len(ids) >= 2, ids
    got = states(ids)
    assert got[ids[0]] == "FAILED" and got[ids[-1]] == "COMPLETED", got
    mem = requested_mem(ids)
    assert mb(mem[ids[1]]) > 2 * mb(mem[ids[0]]), mem  # the renders grown by retry_memory_growth (10)
    first_log = (work / ".snakemake" / "slurm_logs").glob(f"group_{bundle}_*/{ids[0]}.log")
    assert "exceeded memory limit" in next(first_log).read_text()
    assert (work / "out" / "bundles" / "done" / f"{bundle}.tsv").exists()


def test_cancelled_bundle_job_is_retried(slurm_cluster, tiny_catalog, tmp_path):
    """scancel of a running bundle job: Snakemake sees it fail, submits it again, and the run ends well."""
    work = tmp_path / "wf"
    r = Run(snakemake_cmd(work, tiny_catalog, ["R22_S11", "R22_S12"]), tmp_path / "snakemake.log")
    try:
        bundle, slurm_id = wait_for(lambda: running_group_job(r), "a running bundle job", run=r)
        subprocess.run(["scancel", slurm_id], check=True, timeout=30)
    except BaseException:
        r.kill()
        raise
    r.check(work)
    check_images(work, 2)
    ids = group_jobs(r)[bundle]
    got = states(ids)
    assert ids[0] == slurm_id and len(ids) >= 2, ids
    assert got[slurm_id] == "CANCELLED" and got[ids[-1]] == "COMPLETED", got
    mem = requested_mem(ids)
    assert len(set(mem.values())) == 1, mem  # not an out-of-memory kill: the same request again


def test_killed_driver_resumes_without_redoing_finished_images(slurm_cluster, tiny_catalog, tmp_path):
    """kill -9 of Snakemake while a second bundle runs; after --unlock the same command finishes
    the campaign, leaving images finished before the kill untouched."""
    work = tmp_path / "wf"
    sensors = ["R22_S10", "R22_S11", "R22_S12"]  # two bundles: one runs after the other
    cmd = snakemake_cmd(work, tiny_catalog, sensors)
    r = Run(cmd, tmp_path / "snakemake-1.log")
    try:
        def second_bundle_running():  # a bundle's job completed (manifest written), another's runs
            groups = group_jobs(r)
            got = states(i for ids in groups.values() for i in ids)
            done = {b for b, ids in groups.items() if got.get(ids[-1]) == "COMPLETED"
                    and (work / "out" / "bundles" / "done" / f"{b}.tsv").exists()}
            return done and any(got.get(ids[-1]) == "RUNNING" for b, ids in groups.items() if b not in done)

        wait_for(second_bundle_running, "a finished image and a second bundle running", run=r)
    finally:
        r.kill()
    orphans = [i for i, state in states(i for ids in group_jobs(r).values() for i in ids).items()
               if state != "COMPLETED"]
    # Slurm jobs outlive the driver; cancel them so the restart does not race their writes
    subprocess.run(["scancel", *orphans], timeout=30)
    wait_for(lambda: not any(s in ("RUNNING", "COMPLETING", "PENDING") for s in states(orphans).values()),
             "the orphaned jobs to end", timeout=60)
    # the images of the bundles that finished (their manifests exist) before the kill
    manifests = "".join(m.read_text() for m in (work / "out" / "bundles" / "done").glob("*.tsv"))
    before = {p: (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest()) for p in images(work)
              if p.name in manifests}
    assert before, manifests

    unlock = subprocess.run(cmd + ["--unlock"], capture_output=True, text=True, env=env_with_venv(), cwd=REPO,
                            timeout=300)
    assert unlock.returncode == 0, unlock.stdout + unlock.stderr
    r2 = run(cmd, work, tmp_path / "snakemake-2.log")  # the same command: the profile has rerun-incomplete
    check_images(work, 3)
    for p, (mtime, digest) in before.items():
        assert p.stat().st_mtime_ns == mtime and hashlib.sha256(p.read_bytes()).hexdigest() == digest, p
    assert "Nothing to be done" not in r2.output()


def test_drained_node_resumes(slurm_cluster, tiny_catalog, tmp_path):
    """The node drained (and resumed 5 s later) while the campaign runs: a job waits (PENDING) during
    the drain, and the run completes."""
    node = subprocess.run(["sinfo", "-h", "-N", "-o", "%N"], capture_output=True, text=True,
                          timeout=30).stdout.split()[0]
    work = tmp_path / "wf"
    r = Run(snakemake_cmd(work, tiny_catalog, ["R22_S11", "R22_S12"]), tmp_path / "snakemake.log")
    drained = False
    try:
        def job_queued():
            got = states(slurm_id for _, slurm_id, _ in r.submitted())
            return any(s in ("PENDING", "RUNNING") for s in got.values())

        wait_for(job_queued, "a pending or running job", run=r)
        subprocess.run(["scontrol", "update", f"nodename={node}", "state=drain", "reason=test"], check=True,
                       timeout=30)
        drained = True
        # drained for at least 5 s and until a job of the run is seen waiting for the node (at most
        # 120 s: a job submitted during the drain pends), else the drain touched nothing
        pending, t0 = set(), time.monotonic()
        while time.monotonic() - t0 < 5 or not pending and time.monotonic() - t0 < 120 and r.proc.poll() is None:
            pending |= {i for i, s in states(slurm_id for _, slurm_id, _ in r.submitted()).items() if s == "PENDING"}
            time.sleep(0.2)
        assert pending, f"no job of the run was PENDING while the node was drained:\n{r.output()[-3000:]}"
    except BaseException:
        r.kill()
        raise
    finally:
        if drained:
            subprocess.run(["scontrol", "update", f"nodename={node}", "state=resume"], check=True, timeout=30)
    r.check(work)
    check_images(work, 2)


def test_science_error_is_not_retried(slurm_cluster, tmp_path):
    """A catalog with a malformed object line: the parse job fails with a CatalogError; the
    profile's retries resubmit it, and the retry stops at once on the recorded error (exit 3)."""
    from dc2flow.synthetic import make_catalog

    catalog = Path(make_catalog(outdir=tmp_path / "cat", visit=1003, ra_deg=20.0, dec_deg=-20.0, band="r", seed=3,
                                radius_deg=0.02))
    catalog.write_text(catalog.read_text() + "object 9 20.0 -20.0 notanumber starSED/x.gz 0 0 0 0 0 0 point none none\n")
    work = tmp_path / "wf"
    # one retry (the profile has 2) is enough to show it, and saves a Slurm round trip
    r = Run(snakemake_cmd(work, str(catalog), ["R22_S11"], "--retries", "1"), tmp_path / "snakemake.log")
    assert r.wait() != 0
    parses = [(slurm_id, log) for _, slurm_id, log in r.submitted() if log.parts[-3] == "rule_parse_catalog"]
    assert len(parses) == 2, r.output()[-4000:]              # the first attempt and the retry
    assert all(state == "FAILED" for state in states(i for i, _ in parses).values())
    job_log = (work / "out" / "logs" / "catalog" / "00001003.log").read_text()   # the last attempt's
    assert "not retried" in job_log and "magnorm" in job_log and f"{catalog.name}:" in job_log
    record = work / "out" / "failures" / "catalog" / "00001003.json"
    assert '"error": "CatalogError"' in record.read_text()
    assert not (work / "out" / "catalog" / "00001003").exists() or not any((work / "out" / "catalog" / "00001003").iterdir())
