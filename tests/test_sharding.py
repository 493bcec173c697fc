"""Sharded campaigns: planning (split, determinism, append, refusal), status, and real runs of
`dc2flow campaign run` through profiles/local (resume, a failed shard, an interrupted shard)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import REPO
from dc2flow import sharding
from dc2flow.errors import CampaignError

DC2FLOW = str(Path(sys.executable).parent / "dc2flow")
VISITS = (1005, 1001, 1003, 1002, 1004)


def dc2flow(*args, cwd=None, timeout=900) -> subprocess.CompletedProcess:
    return subprocess.run([DC2FLOW, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=timeout)


def make_catalog(outdir: Path, visit: int) -> str:
    from dc2flow.synthetic import make_catalog

    return make_catalog(outdir=outdir, visit=visit, ra_deg=55.0, dec_deg=-30.0, band="r", seed=visit,
                        radius_deg=0.05, star_density=2000, galaxy_density=2000)


@pytest.fixture(scope="module")
def cats(tmp_path_factory) -> Path:
    """Five tiny synthetic visits (catalogs phosim_cat_{visit}.txt), made in shuffled order."""
    folder = tmp_path_factory.mktemp("cats")
    for visit in VISITS:
        make_catalog(folder, visit)
    return folder


def mtimes(campaign_dir: Path) -> dict:
    return {p: p.stat().st_mtime_ns for p in sorted(campaign_dir.rglob("*")) if p.is_file()}


# --- planning ----------------------------------------------------------------------------------
def test_plan_sorts_by_visit_and_splits(cats, tmp_path):
    camp, added = sharding.plan_campaign([str(cats / "phosim_cat_*.txt")], 2, "out", tmp_path / "c")
    assert [s.name for s in added] == ["shard-0000", "shard-0001", "shard-0002"]
    assert [s.visits for s in camp.shards] == [(1001, 1002), (1003, 1004), (1005,)]
    overlay = yaml.safe_load((tmp_path / "c" / "shards" / "shard-0001.yaml").read_text())
    assert overlay == {"catalogs": [str(cats / "phosim_cat_1003.txt"), str(cats / "phosim_cat_1004.txt")],
                       "outdir": os.path.abspath("out"), "shard": "shard-0001"}
    plan = json.loads((tmp_path / "c" / "campaign.json").read_text())
    assert plan["shard_size"] == 2 and plan["n_visits"] == 5 and plan["configfile"] is None
    assert [s["visits"] for s in plan["shards"]] == [[1001, 1002], [1003, 1004], [1005]]
    assert sharding.read_campaign(tmp_path / "c") == camp


def test_replanning_the_same_campaign_changes_nothing(cats, tmp_path):
    args = ([str(cats / "phosim_cat_*.txt")], 2, str(tmp_path / "out"), tmp_path / "c")
    first, _ = sharding.plan_campaign(*args)
    before = mtimes(tmp_path / "c")
    time.sleep(0.01)
    again, added = sharding.plan_campaign(*args)
    assert again == first and added == [] and mtimes(tmp_path / "c") == before
    # the same catalogs named one by one, in another order: the same plan
    named = [str(cats / f"phosim_cat_{v}.txt") for v in VISITS]
    assert sharding.plan_campaign(named, *args[1:]) == (first, [])


def test_new_catalogs_are_appended_without_renumbering(cats, tmp_path):
    some = [str(cats / f"phosim_cat_{v}.txt") for v in (1001, 1002, 1004)]
    first, _ = sharding.plan_campaign(some, 2, "out", tmp_path / "c")
    overlay = (tmp_path / "c" / "shards" / "shard-0001.yaml").read_text()
    camp, added = sharding.plan_campaign([str(cats / "phosim_cat_*.txt")], 2, "out", tmp_path / "c")
    assert camp.shards[:2] == first.shards and [s.visits for s in camp.shards] == [(1001, 1002), (1004,), (1003, 1005)]
    assert [s.name for s in added] == ["shard-0002"]
    assert (tmp_path / "c" / "shards" / "shard-0001.yaml").read_text() == overlay


def test_changed_settings_are_refused_once_a_shard_has_run(cats, tmp_path):
    pattern = [str(cats / "phosim_cat_*.txt")]
    sharding.plan_campaign(pattern, 2, "out", tmp_path / "c")
    camp, _ = sharding.plan_campaign(pattern, 3, "out", tmp_path / "c")  # nothing ran: planned afresh
    assert [s.visits for s in camp.shards] == [(1001, 1002, 1003), (1004, 1005)]
    assert sorted(p.name for p in (tmp_path / "c" / "shards").glob("*.yaml")) == ["shard-0000.yaml", "shard-0001.yaml"]
    (tmp_path / "c" / "logs").mkdir()
    (tmp_path / "c" / "logs" / "shard-0000.log").write_text("ran\n")
    with pytest.raises(CampaignError, match=r"campaign.json: shard_size 2 differs from the planned 3, and 1 shard"
                                            r"\(s\) have run \(shard-0000...\); plan again with shard_size 3"):
        sharding.plan_campaign(pattern, 2, "out", tmp_path / "c")
    with pytest.raises(CampaignError, match="outdir"):
        sharding.plan_campaign(pattern, 3, "elsewhere", tmp_path / "c")
    assert sharding.read_campaign(tmp_path / "c") == camp


def test_a_visit_from_another_catalog_is_refused(cats, tmp_path):
    sharding.plan_campaign([str(cats / "phosim_cat_1001.txt")], 2, "out", tmp_path / "c")
    copy = tmp_path / "copy" / "phosim_cat_1001.txt"
    copy.parent.mkdir()
    shutil.copy(cats / "phosim_cat_1001.txt", copy)
    with pytest.raises(CampaignError, match=rf"{copy}: visit 1001 is planned in shard-0000 from "):
        sharding.plan_campaign([str(copy)], 2, "out", tmp_path / "c")


@pytest.mark.parametrize("text,match", [("scene: {sed_dir: seds}\n", "scene.sed_dir is a relative path"),
                                        ("outdir: x\n", "sets 'outdir'"),
                                        ("opsim_db: /x.db\nvisits: [1]\n", "sets 'opsim_db': a sharded campaign is of instance"),
                                        ("snaps: [0, 1]\n", "sets 'snaps' other than \\[0\\]"),
                                        ("render: {noise: maybe}\n", "render.noise")])
def test_bad_base_config_is_refused(cats, tmp_path, text, match):
    (tmp_path / "base.yaml").write_text(text)
    with pytest.raises(Exception, match=match):
        sharding.plan_campaign([str(cats / "phosim_cat_1001.txt")], 1, "out", tmp_path / "c", str(tmp_path / "base.yaml"))
    assert not (tmp_path / "c").exists()


def test_bad_shard_size():
    with pytest.raises(CampaignError, match=r"--shard-size: must be at least 1 \(0\)"):
        sharding.plan_campaign(["x"], 0, "out", "c")


# --- status ------------------------------------------------------------------------------------
def test_status_from_markers(cats, tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text("sensors: [R22_S11]\n")
    camp, _ = sharding.plan_campaign([str(cats / "phosim_cat_*.txt")], 1, "out", tmp_path / "c", str(base))
    c = tmp_path / "c"
    write = sharding.write_json
    write(sharding.state_file(c, "shard-0000", "done"), {"config_hash": sharding.config_hash(c, camp, camp.shards[0])})
    write(sharding.state_file(c, "shard-0001", "failed"), {"exit_code": 1, "interrupted": False})
    write(sharding.state_file(c, "shard-0002", "running"), {"pid": os.getpid(), "host": os.uname().nodename})
    dead = subprocess.Popen(["true"])
    dead.wait()
    write(sharding.state_file(c, "shard-0003", "running"), {"pid": dead.pid, "host": os.uname().nodename})
    _, statuses = sharding.campaign_status(c)
    assert [s.state for s in statuses] == ["done", "failed", "running", "failed", "planned"]
    assert "exit 1" in statuses[1].detail and "without recording" in statuses[3].detail
    base.write_text("sensors: [R22_S12]\n")  # the base config changed: shard-0000 is to run again
    assert sharding.shard_status(c, camp, camp.shards[0]).state == "planned"

    proc = dc2flow("campaign", "status", "--dir", c, "--json")
    data = json.loads(proc.stdout)
    assert data["totals"] == {"planned": 2, "running": 1, "done": 0, "failed": 2}
    assert [s["n_visits"] for s in data["shards"]] == [1] * 5
    text = dc2flow("campaign", "status", "--dir", c).stdout
    assert "shard-0001        1  failed" in text and "5 shards, 5 visits: 2 planned, 1 running" in text


# --- the command line --------------------------------------------------------------------------
def test_cli_plan_status_and_errors(cats, tmp_path):
    proc = dc2flow("campaign", "plan", cats / "phosim_cat_*.txt", "--shard-size", 2, "--outdir", tmp_path / "out",
                   "--dir", tmp_path / "c")
    assert proc.returncode == 0 and "3 shards, 5 visits (added shard-0000 to shard-0002)" in proc.stdout
    proc = dc2flow("campaign", "plan", cats / "phosim_cat_*.txt", "--shard-size", 2, "--outdir", tmp_path / "out",
                   "--dir", tmp_path / "c")
    assert "(nothing new)" in proc.stdout
    proc = dc2flow("campaign", "status", "--dir", tmp_path / "nowhere")
    assert proc.returncode == 1 and proc.stderr.startswith("dc2flow campaign: error: ") and \
        "campaign.json: no campaign planned here" in proc.stderr
    proc = dc2flow("campaign", "plan", tmp_path / "none*.txt", "--shard-size", 2, "--outdir", "o", "--dir", tmp_path / "d")
    assert proc.returncode == 1 and "matches no file" in proc.stderr
    proc = dc2flow("campaign", "run", "--dir", tmp_path / "c", "--profile", "profiles/local", "--", "--configfile", "x")
    assert proc.returncode == 1 and "('--configfile')" in proc.stderr
    for verb in ("plan", "run", "status"):
        assert dc2flow("campaign", verb, "--help").stdout.startswith(f"usage: dc2flow campaign {verb}")


def test_dry_run_passes_the_profile_configfiles_first(cats, tmp_path):
    (tmp_path / "base.yaml").write_text("sensors: [R22_S11]\n")
    dc2flow("campaign", "plan", cats / "phosim_cat_100[12].txt", "--shard-size", 1, "--outdir", tmp_path / "out",
            "--dir", tmp_path / "c", "--configfile", tmp_path / "base.yaml")
    # from another directory: the profile's relative configfiles are found from the repository root
    proc = dc2flow("campaign", "run", "--dir", "c", "--profile", REPO / "profiles" / "ci-slurm", "--dry-run",
                   "--", "--cores", "1", "all", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "2 shards: 0 done, 2 to run" and len(lines) == 3
    c = tmp_path / "c"
    # a target after `--` is not taken for a config file: --configfile (which takes every value after it) is last
    assert lines[2].endswith(f"--directory {c}/shards/shard-0001 --cores 1 all --configfile "
                             f"{REPO}/profiles/ci-slurm/node.yaml {tmp_path}/base.yaml {c}/shards/shard-0001.yaml")
    assert f"--snakefile {REPO}/Snakefile --profile {REPO}/profiles/ci-slurm" in lines[1]
    assert not (c / "logs").exists() and not (c / "state").exists()
    assert sharding.profile_configfiles(str(REPO / "profiles" / "local")) == []
    bad = tmp_path / "badprofile"
    bad.mkdir()
    (bad / "config.yaml").write_text("executor: slurm\njobs: [1,\n")
    with pytest.raises(CampaignError, match=r"badprofile/config.yaml:\d+: not valid YAML"):
        sharding.profile_configfiles(str(bad))


# --- real runs ---------------------------------------------------------------------------------
def run_campaign(c: Path, *extra, check_rc=None) -> subprocess.CompletedProcess:
    proc = dc2flow("campaign", "run", "--dir", c, "--profile", "profiles/local", "--parallel", 2, "--", "--cores", 1,
                   *extra, cwd=REPO)
    if check_rc is not None and proc.returncode != check_rc:
        logs = "".join(p.read_text()[-3000:] for p in sorted((c / "logs").glob("*.log")))
        raise AssertionError(f"exit {proc.returncode}:\n{proc.stdout}\n{proc.stderr}\n{logs}")
    return proc


def states(c: Path) -> list[str]:
    return [s.state for s in sharding.campaign_status(c)[1]]


@pytest.mark.slow
def test_run_resume_failure_and_interrupt(tmp_path):
    """Two one-visit shards side by side (one fails on a missing include), a resume that runs only
    the failed one, a run with nothing to do, then an appended shard interrupted and resumed."""
    cats, c, out = tmp_path / "cats", tmp_path / "c", tmp_path / "out"
    for visit in (1001, 1002, 1003):
        make_catalog(cats, visit)
    (tmp_path / "base.yaml").write_text("sensors: [R22_S11]\nvalidation: {mosaic_bin: 64}\n")
    plan = ["campaign", "plan", "--shard-size", 1, "--outdir", out, "--dir", c, "--configfile", tmp_path / "base.yaml"]
    assert dc2flow(*plan, cats / "phosim_cat_100[12].txt").returncode == 0
    proc = run_campaign(c, "-n", check_rc=0)  # Snakemake's dry run of each shard: no done marker
    assert proc.stdout.count("finished (no done marker") == 2 and states(c) == ["planned", "planned"]
    include = cats / "star_cat_1002.txt.gz"
    include.rename(tmp_path / "hidden.gz")

    proc = run_campaign(c, check_rc=1)
    assert "shard-0000: done" in proc.stdout and "shard-0001: failed (exit 1)" in proc.stdout
    assert "1 shard(s) not done: shard-0001" in proc.stdout
    assert states(c) == ["done", "failed"]
    assert (out / "00001001" / "eimage_00001001-0-r-R22_S11-det094.fits").exists()
    assert (out / "bundles" / "shard-0000" / "campaign.csv").exists() and not (out / "bundles" / "campaign.csv").exists()
    assert (out / "validation" / "shard-0000" / "resources.png").exists()
    assert "Error in rule parse_catalog" in (c / "logs" / "shard-0001.log").read_text()
    assert "star_cat_1002.txt.gz" in (out / "logs" / "catalog" / "00001002.log").read_text()

    (tmp_path / "hidden.gz").rename(include)
    log0 = (c / "logs" / "shard-0000.log").read_text()
    proc = run_campaign(c, check_rc=0)
    assert proc.stdout.startswith("2 shards: 1 done, 1 to run") and "shard-0000" not in proc.stdout
    assert states(c) == ["done", "done"] and (c / "logs" / "shard-0000.log").read_text() == log0
    assert (out / "00001002" / "eimage_00001002-0-r-R22_S11-det094.fits").exists()
    assert sorted(p.name for p in (out / "bundles").iterdir()) == ["shard-0000", "shard-0001"]
    records = sorted((out / "registry" / "records").rglob("*.json"))   # bundle names restart per shard
    assert [json.loads(r.read_text())["bundle"] for r in records] == ["shard-0000/b0000", "shard-0001/b0000"]

    proc = run_campaign(c, check_rc=0)  # resume: nothing left
    assert proc.stdout.strip() == "2 shards: 2 done, 0 to run" and not list((c / "state").glob("*.running.json"))

    # a third visit is appended as shard-0002; its run is interrupted (Ctrl-C), then resumed
    assert "added shard-0002" in dc2flow(*plan, cats / "phosim_cat_*.txt").stdout
    launcher = subprocess.Popen([DC2FLOW, "campaign", "run", "--dir", c, "--profile", "profiles/local", "--", "--cores",
                                 "1"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    running = sharding.state_file(c, "shard-0002", "running")
    deadline = time.time() + 300
    while time.time() < deadline and "rule parse_catalog" not in (
            (c / "logs" / "shard-0002.log").read_text() if running.exists() else ""):
        time.sleep(0.2)
    child = json.loads(running.read_text())["pid"]
    launcher.send_signal(signal.SIGINT)
    stdout, _ = launcher.communicate(timeout=300)
    assert launcher.returncode == 128 + signal.SIGINT, stdout
    assert "passing it on to 1 Snakemake process(es)" in stdout and "shard-0002: interrupted" in stdout
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)
    assert states(c) == ["done", "done", "failed"] and not running.exists()
    assert json.loads(sharding.state_file(c, "shard-0002", "failed").read_text())["interrupted"] is True

    proc = run_campaign(c, check_rc=0)
    assert proc.stdout.startswith("3 shards: 2 done, 1 to run") and states(c) == ["done"] * 3
    assert (out / "00001003" / "eimage_00001003-0-r-R22_S11-det094.fits").exists()
    assert not sharding.state_file(c, "shard-0002", "failed").exists()
