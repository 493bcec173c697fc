"""Tests of dc2flow.packing: feasibility, optimality on hand-made cases, determinism, bad input, files."""

from __future__ import annotations

import csv
import json
import math
import random

import pytest

from dc2flow.camera import DET_NAMES

from dc2flow.packing import (PLAN_COLUMNS, Job, Node, Plan, check_plan, dc2_flat_bundles, first_fit_decreasing,
                             format_summary, lower_bound, node_seconds_bound, plan_bundles, read_jobs, read_plan,
                             run_cli, solve_milp, strong_lower_bound, visit_first_fit, write_plan)
from dc2flow.errors import BundlingError, ConfigError, EstimateError

TOL_GB = 1e-6


# ------------------------------------------------------------------------------------------------
# helpers


def check_feasible(plan: Plan, node: Node, jobs=None) -> None:
    """Every job exactly once; no bundle over memory (with one overhead per visit), cores or time.

    Recomputed here from the jobs, independently of the module's own checks.
    """
    seen = [(j.visit, j.det_name) for bundle in plan.bundles for j in bundle]
    assert len(seen) == len(set(seen)), "a job is in two bundles"
    if jobs is not None:
        assert sorted(seen) == sorted((j.visit, j.det_name) for j in jobs), "jobs lost or invented"
    for bundle in plan.bundles:
        assert bundle, "empty bundle"
        mem = sum(j.mem_gb for j in bundle) + node.visit_overhead_gb * len({j.visit for j in bundle})
        assert mem <= node.memory_gb + TOL_GB, f"bundle needs {mem} GB > {node.memory_gb}"
        assert len(bundle) <= node.cores
        assert max(j.runtime_s for j in bundle) <= node.time_limit_s
    assert check_plan(plan, jobs) == []


def _partitions(items):
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for part in _partitions(rest):
        for i in range(len(part)):
            yield part[:i] + [[first] + part[i]] + part[i + 1:]
        yield [[first]] + part


def brute_force_optimum(jobs, node) -> int:
    """The fewest bundles, by trying every partition (small inputs only)."""
    def fits(b):
        mem = sum(j.mem_gb for j in b) + node.visit_overhead_gb * len({j.visit for j in b})
        return mem <= node.memory_gb + TOL_GB and len(b) <= node.cores

    return min(len(p) for p in _partitions(list(jobs)) if all(fits(b) for b in p))


def random_jobs(seed: int, n_visits: int, per_visit: tuple[int, int] = (5, 15), runtime: bool = True) -> list[Job]:
    rng = random.Random(seed)
    jobs = []
    for v in range(n_visits):
        density = rng.lognormvariate(0.0, 0.5)
        for d in range(rng.randint(*per_visit)):
            mem = min(6.0, round(0.3 + density * rng.uniform(0.2, 1.8) + (rng.random() < 0.1) * rng.uniform(1, 4), 3))
            jobs.append(Job(2000 + v, DET_NAMES[d], mem,
                            round(rng.uniform(100, 3000), 1) if runtime else 0.0))
    return jobs


# The per-visit overhead makes FFD open a third node: visit 1000 has 3 + 2 GB, visit 1001 has
# 4 + 2 + 2 GB, nodes have 10 GB and each visit present costs 2 GB.  FFD takes 4 (1001) -> node 0
# (6 GB), 3 (1000) -> node 1 (5 GB: 3 + 2 would overflow node 0), 2 (1000) -> node 0 (6 + 2 + 2 =
# 10 GB: a second overhead), 2 (1001) -> node 1 (9 GB), 2 (1001) -> a new node 2.  One visit per
# node fits in two: 4 + 2 + 2 + 2 = 10 GB and 3 + 2 + 2 = 7 GB.  Without overheads (13 GB in 20)
# FFD would need two as well.
OVERHEAD_NODE = Node(memory_gb=10.0, cores=10, visit_overhead_gb=2.0)
OVERHEAD_JOBS = [Job(1000, "R22_S00", 3.0, 100.0), Job(1000, "R22_S01", 2.0, 200.0),
                 Job(1001, "R22_S00", 4.0, 300.0), Job(1001, "R22_S01", 2.0, 100.0),
                 Job(1001, "R22_S02", 2.0, 50.0)]

# Classic bin packing where FFD is suboptimal (one visit): 4, 4, 3, 3, 3, 3 in bins of 10 (11 GB
# nodes minus the 1 GB overhead).  FFD: {4, 4}, {3, 3, 3}, {3}; the optimum {4, 3, 3} twice.
PLAIN_NODE = Node(memory_gb=11.0, cores=8, visit_overhead_gb=1.0)
PLAIN_JOBS = [Job(1002, f"R22_S{i}0", m) for i, m in enumerate([4.0, 4.0, 3.0, 3.0, 3.0, 3.0])]


# ------------------------------------------------------------------------------------------------
# optimality on hand-made cases


def test_overhead_case_by_hand():
    assert first_fit_decreasing(OVERHEAD_JOBS, OVERHEAD_NODE).n_bundles == 3
    assert brute_force_optimum(OVERHEAD_JOBS, OVERHEAD_NODE) == 2
    plan, summary = plan_bundles(OVERHEAD_JOBS, OVERHEAD_NODE, time_limit_s=10)
    check_feasible(plan, OVERHEAD_NODE, OVERHEAD_JOBS)
    assert plan.n_bundles == 2
    assert summary.ffd_bundles == 3 and summary.n_bundles == 2
    assert {frozenset(j.visit for j in b) for b in plan.bundles} == {frozenset({1000}), frozenset({1001})}
    assert plan.bundle_memory_gb(0) == pytest.approx(7.0) and plan.bundle_memory_gb(1) == pytest.approx(10.0)


def test_plain_bin_packing_case_by_hand():
    assert first_fit_decreasing(PLAIN_JOBS, PLAIN_NODE).n_bundles == 3
    assert brute_force_optimum(PLAIN_JOBS, PLAIN_NODE) == 2
    plan, summary = plan_bundles(PLAIN_JOBS, PLAIN_NODE, time_limit_s=10)
    check_feasible(plan, PLAIN_NODE, PLAIN_JOBS)
    assert plan.n_bundles == 2
    assert sorted(sorted(j.mem_gb for j in b) for b in plan.bundles) == [[3.0, 3.0, 4.0]] * 2
    assert summary.gap == 0.0 and summary.method == "milp"


@pytest.mark.parametrize("solver", ["cbc", "highs"])
@pytest.mark.parametrize("case", ["overhead", "plain"])
def test_both_solvers_find_the_optimum(solver, case):
    jobs, node = (OVERHEAD_JOBS, OVERHEAD_NODE) if case == "overhead" else (PLAIN_JOBS, PLAIN_NODE)
    ffd = first_fit_decreasing(jobs, node)
    plan = solve_milp(jobs, node, solver=solver, time_limit_s=20, warm_start=ffd)
    check_feasible(plan, node, jobs)
    assert plan.n_bundles == 2
    plan, summary = plan_bundles(jobs, node, solver=solver, time_limit_s=20)
    assert plan.n_bundles == 2 and summary.solver == solver


def test_random_small_instances_are_optimal():
    """A single integer program matches brute force on tiny instances of two or three visits."""
    rng = random.Random(5)
    for trial in range(6):
        node = Node(10.0, rng.choice([3, 4, 10]), rng.choice([0.5, 1.0, 2.0]))
        jobs = [Job(3000 + rng.randrange(3), f"R22_S{k}", float(rng.randint(1, 5))) for k in range(7)]
        plan, summary = plan_bundles(jobs, node, time_limit_s=10)
        check_feasible(plan, node, jobs)
        assert plan.n_bundles == brute_force_optimum(jobs, node), (trial, jobs, node)


def test_runtime_balance_groups_slow_sensors():
    # 4 sensors, 2 per node by cores: the two slow ones together cost 1000 + 10 node-seconds,
    # split, as FFD by memory does ({A, C}, {B, D}), 1000 + 1000.
    node = Node(100.0, 2, 1.0)
    jobs = [Job(1, "A", 2.0, 1000.0), Job(1, "B", 1.8, 1000.0), Job(1, "C", 1.9, 10.0), Job(1, "D", 1.7, 10.0)]
    assert first_fit_decreasing(jobs, node).node_seconds == 2000.0
    plan, summary = plan_bundles(jobs, node, time_limit_s=10)
    check_feasible(plan, node, jobs)
    assert plan.n_bundles == 2 and plan.node_seconds == 1010.0
    assert summary.node_seconds == 1010.0 and summary.node_seconds_bound <= 1010.0


# ------------------------------------------------------------------------------------------------
# feasibility and never worse than FFD, on random instances


@pytest.mark.parametrize("seed", range(4))
def test_random_instances_single_program(seed):
    rng = random.Random(seed)
    node = Node(rng.choice([24.0, 40.0]), rng.choice([6, 8, 16]), rng.choice([1.0, 3.0]), 2500.0)
    jobs = [j for j in random_jobs(seed, 4) if j.runtime_s <= 2500.0]
    plan, summary = plan_bundles(jobs, node, time_limit_s=5)
    check_feasible(plan, node, jobs)
    ffd = first_fit_decreasing(jobs, node)
    assert plan.score() <= ffd.score()
    assert summary.lower_bound <= summary.strong_lower_bound <= plan.n_bundles
    assert summary.node_seconds_bound <= plan.node_seconds + 1e-6


@pytest.mark.parametrize("seed", range(4))
def test_random_instances_decomposed(seed):
    rng = random.Random(100 + seed)
    node = Node(rng.choice([16.0, 24.0]), rng.choice([4, 6, 8]), rng.choice([1.0, 2.5]))
    jobs = random_jobs(100 + seed, 8, (6, 14))
    plan, summary = plan_bundles(jobs, node, time_limit_s=10, milp_max_jobs=30)
    check_feasible(plan, node, jobs)
    assert plan.score() <= first_fit_decreasing(jobs, node).score()
    assert plan.n_bundles <= visit_first_fit(jobs, node).n_bundles
    assert plan.n_bundles >= summary.strong_lower_bound
    assert summary.method in ("decomposed", "ffd", "visit-ffd")


@pytest.mark.parametrize("seed,node", [(3, Node(16.0, 6, 2.0)), (5, Node(32.0, 8, 6.0))])
def test_decomposition_beats_both_heuristics(seed, node):
    # ten visits with a large overhead: FFD mixes visits and pays for it, visit-grouped first
    # fit leaves partly filled bundles; the decomposition reaches the bound (found by search)
    jobs = random_jobs(seed, 10, (8, 14), runtime=False)
    plan, summary = plan_bundles(jobs, node, time_limit_s=10, milp_max_jobs=40)
    check_feasible(plan, node, jobs)
    assert summary.method == "decomposed"
    assert plan.n_bundles < visit_first_fit(jobs, node).n_bundles < first_fit_decreasing(jobs, node).n_bundles
    assert plan.n_bundles == summary.strong_lower_bound and summary.gap == 0.0


# ------------------------------------------------------------------------------------------------
# determinism


@pytest.mark.parametrize("milp_max_jobs", [400, 25])
def test_same_input_same_plan_any_order(milp_max_jobs):
    # a solve stopped by its time limit keeps whatever it has found by then, which depends on the
    # machine's load: the runtime phase stops at RUNTIME_PHASE_MAX_NODES instead (~9 s here; with a
    # 24 s time limit alone, this failed on a loaded machine), and a generous limit keeps the clock out
    node = Node(20.0, 6, 2.0)
    jobs = random_jobs(11, 5, (5, 10))
    first, _ = plan_bundles(jobs, node, time_limit_s=120, milp_max_jobs=milp_max_jobs)
    again, _ = plan_bundles(jobs, node, time_limit_s=120, milp_max_jobs=milp_max_jobs)
    shuffled = list(jobs)
    random.Random(3).shuffle(shuffled)
    other, _ = plan_bundles(shuffled, node, time_limit_s=120, milp_max_jobs=milp_max_jobs)
    assert first.rows() == again.rows() == other.rows()
    assert first == other


def test_heuristics_do_not_depend_on_order():
    node = Node(20.0, 6, 2.0)
    jobs = random_jobs(12, 4)
    shuffled = list(reversed(jobs))
    assert first_fit_decreasing(jobs, node).rows() == first_fit_decreasing(shuffled, node).rows()
    assert visit_first_fit(jobs, node).rows() == visit_first_fit(shuffled, node).rows()


def test_plan_is_canonical():
    node = OVERHEAD_NODE
    a = Plan(((OVERHEAD_JOBS[4], OVERHEAD_JOBS[2], OVERHEAD_JOBS[3]), (OVERHEAD_JOBS[1], OVERHEAD_JOBS[0]), ()), node)
    b = Plan(((OVERHEAD_JOBS[0], OVERHEAD_JOBS[1]), (OVERHEAD_JOBS[2], OVERHEAD_JOBS[3], OVERHEAD_JOBS[4])), node)
    assert a == b
    assert a.names == ("b0000", "b0001")
    first = a.rows()[0]
    assert (first.bundle, first.visit, first.det_name) == ("b0000", 1000, "R22_S00")
    assert a.bundle_cores(1) == 3 and a.bundle_runtime_s(1) == 300.0


# ------------------------------------------------------------------------------------------------
# bounds and comparisons


def test_lower_bounds_by_hand():
    node = Node(10.0, 4, 2.0)
    jobs = [Job(1, f"S{k}", 3.0) for k in range(5)] + [Job(2, "S0", 1.0)]
    # sum mem 16 GB / (10 - 2) -> 2; 6 sensors / 4 cores -> 2
    assert lower_bound(jobs, node) == 2
    # visit 1: 15 GB -> 2 bundles, visit 2: 1 bundle; (16 + 2 * 3) / 10 -> 3
    assert strong_lower_bound(jobs, node) == 3
    assert brute_force_optimum(jobs, node) == 3
    assert lower_bound([], node) == strong_lower_bound([], node) == 0


def test_node_seconds_bound_by_hand():
    node = Node(100.0, 2, 1.0)
    jobs = [Job(1, "A", 1.0, 50.0), Job(1, "B", 1.0, 40.0), Job(1, "C", 1.0, 30.0)]
    # the two slowest share a node at best: 50 + 30
    assert node_seconds_bound(jobs, node) == 80.0


def test_dc2_flat_rule():
    node = Node(30.0, 16, 1.0)  # (30 - 10) / 2 = 10 sensors per bundle
    jobs = [Job(1, f"S{k:03d}", 0.1) for k in range(25)] + [Job(2, f"S{k:03d}", 0.1) for k in range(5)]
    assert dc2_flat_bundles(jobs, node) == 3 + 1
    assert dc2_flat_bundles(jobs, Node(11.0, 4, 1.0)) is None  # 2 + 10 > 11: the rule cannot fit


# ------------------------------------------------------------------------------------------------
# bad input


@pytest.mark.parametrize("field,value,word", [
    ("mem_gb", math.nan, "nan"), ("mem_gb", -1.0, "-1"), ("mem_gb", math.inf, "inf"),
    ("runtime_s", math.nan, "nan"), ("runtime_s", -5.0, "-5"), ("runtime_s", math.inf, "inf"),
])
def test_bad_numbers_name_visit_and_sensor(field, value, word):
    node = Node(16.0, 4, 1.0)
    bad = Job(1001, "R22_S11", **{"mem_gb": 1.0, "runtime_s": 1.0, field: value})
    with pytest.raises(BundlingError) as info:
        plan_bundles([Job(1001, "R22_S10", 1.0), bad], node)
    message = str(info.value)
    assert "visit 1001 R22_S11" in message and field in message and word in message
    assert "fix the estimate" in message


def test_sensor_bigger_than_a_node():
    node = Node(16.0, 4, 2.0)
    with pytest.raises(BundlingError) as info:
        plan_bundles([Job(1001, "R22_S11", 15.0)], node)
    message = str(info.value)
    assert "visit 1001 R22_S11" in message and "17 GB" in message and "16 GB" in message
    assert "more memory" in message and "lower the estimate" in message


def test_runtime_over_the_time_limit():
    node = Node(16.0, 4, 2.0, time_limit_s=3600.0)
    with pytest.raises(BundlingError) as info:
        plan_bundles([Job(1001, "R22_S11", 1.0, 4000.0)], node)
    message = str(info.value)
    assert "visit 1001 R22_S11" in message and "4000" in message and "3600" in message
    assert "longer time limit" in message


def test_duplicates():
    node = Node(16.0, 4, 2.0)
    with pytest.raises(BundlingError, match="visit 1001 R22_S11: listed twice; remove the duplicate"):
        plan_bundles([Job(1001, "R22_S11", 1.0), Job(1001, "R22_S11", 2.0)], node)


def test_empty_input_gives_empty_plan(tmp_path):
    node = Node(16.0, 4, 2.0)
    plan, summary = plan_bundles([], node)
    assert plan.bundles == () and plan.rows() == []
    assert summary.n_jobs == summary.n_bundles == summary.lower_bound == 0
    assert first_fit_decreasing([], node).bundles == ()
    assert solve_milp([], node).bundles == ()
    write_plan(tmp_path / "plan.csv", plan)
    assert (tmp_path / "plan.csv").read_text() == ",".join(PLAN_COLUMNS) + "\n"
    assert "0 sensors" in format_summary(summary)


@pytest.mark.parametrize("kwargs", [dict(memory_gb=0.0, cores=4, visit_overhead_gb=1.0),
                                    dict(memory_gb=math.nan, cores=4, visit_overhead_gb=1.0),
                                    dict(memory_gb=16.0, cores=0, visit_overhead_gb=1.0),
                                    dict(memory_gb=16.0, cores=4, visit_overhead_gb=-1.0),
                                    dict(memory_gb=16.0, cores=4, visit_overhead_gb=16.0),
                                    dict(memory_gb=16.0, cores=4, visit_overhead_gb=1.0, time_limit_s=0.0)])
def test_bad_node(kwargs):
    with pytest.raises(ConfigError, match="bundle\\."):
        Node(**kwargs)


def test_bad_solver_and_limits():
    node = Node(16.0, 4, 2.0)
    jobs = [Job(1, "S0", 1.0)]
    with pytest.raises(ConfigError, match="bundle.solver"):
        plan_bundles(jobs, node, solver="gurobi")
    with pytest.raises(ConfigError, match="solve_time_limit_s"):
        plan_bundles(jobs, node, time_limit_s=0)


# ------------------------------------------------------------------------------------------------
# files


def _write(path, text):
    path.write_text(text)
    return path


def test_read_jobs_csv_and_tsv(tmp_path):
    jobs = read_jobs(_write(tmp_path / "jobs.csv", "visit,det_name,mem_gb,runtime_s\n1001,R22_S11,1.5,60\n\n"
                                                    "1001,R22_S12,2,\n"))
    assert jobs == [Job(1001, "R22_S11", 1.5, 60.0), Job(1001, "R22_S12", 2.0, 0.0)]
    jobs = read_jobs(_write(tmp_path / "jobs2.csv", "det_name,visit,mem_gb\nR01_S00,7,0.5\n"))
    assert jobs == [Job(7, "R01_S00", 0.5)]
    jobs = read_jobs(_write(tmp_path / "1001.tsv", "visit\tdet_name\tmem_gb\truntime_s\tn_objects\n"
                                                   "1001\tR22_S11\t1.25\t30\t4.2\n"))
    assert jobs == [Job(1001, "R22_S11", 1.25, 30.0)]


def test_read_jobs_missing_column(tmp_path):
    path = _write(tmp_path / "jobs.csv", "visit,det_name\n1001,R22_S11\n")
    with pytest.raises(EstimateError) as info:
        read_jobs(path)
    message = str(info.value)
    assert f"{path}:1:" in message and "missing column 'mem_gb'" in message and "dc2flow estimate" in message
    old = _write(tmp_path / "old.csv", "visit,sensor,mem_gb\n1001,R22_S11,1\n")   # the old name of det_name
    with pytest.raises(EstimateError, match=r"old.csv:1: missing column 'det_name' \('sensor' is its old name"):
        read_jobs(old)


@pytest.mark.parametrize("row,column", [("1001,R22_S11,abc", "mem_gb"), ("10x1,R22_S11,1.0", "visit"),
                                        ("1001,R22_S11,1.0,slow", "runtime_s"), ("1001,R22_S11,nan", "mem_gb"),
                                        ("1001,R22_S11,-1", "mem_gb"), ("1001,R22_S11,", "mem_gb")])
def test_read_jobs_bad_number(tmp_path, row, column):
    path = _write(tmp_path / "jobs.csv", "visit,det_name,mem_gb,runtime_s\n1001,R22_S10,1.0,5\n" + row + "\n")
    with pytest.raises(EstimateError) as info:
        read_jobs(path)
    message = str(info.value)
    assert f"{path}:3:" in message and f"column '{column}'" in message and "fix or delete the line" in message


def test_read_jobs_short_row_bad_sensor_and_missing_file(tmp_path):
    path = _write(tmp_path / "jobs.csv", "visit,det_name,mem_gb\n1001,R22_S11\n")
    with pytest.raises(EstimateError, match=r":2: column 'mem_gb' is not a finite number >= 0 \(''\)"):
        read_jobs(path)
    path = _write(tmp_path / "jobs.csv", "visit,det_name,mem_gb\n1001,R00_S11,1\n")
    with pytest.raises(EstimateError, match=r":2: column 'det_name' is not an LSSTCam science sensor \('R00_S11'\)"):
        read_jobs(path)
    with pytest.raises(EstimateError, match="cannot read"):
        read_jobs(tmp_path / "nope.csv")


def test_nan_job_names_visit_and_sensor():
    with pytest.raises(BundlingError, match="visit 1001 R22_S11: mem_gb is nan"):
        plan_bundles([Job(1001, "R22_S11", math.nan)], Node(16.0, 4, 1.0))


def test_write_plan_round_trip(tmp_path):
    node = Node(20.0, 6, 2.0)
    jobs = random_jobs(21, 3)
    plan, _ = plan_bundles(jobs, node, time_limit_s=5)
    path = tmp_path / "out" / "plan.csv"
    write_plan(path, plan)
    with open(path, newline="") as fh:
        header = next(csv.reader(fh))
    assert tuple(header) == PLAN_COLUMNS == ("bundle", "visit", "snap", "det_name", "mem_mb", "runtime_min", "bundle_mem_mb")
    rows = read_plan(path)
    assert rows == plan.rows() and len(rows) == len(jobs)
    for i in range(plan.n_bundles):   # each bundle's requests add up to its planned memory (rounded down per row)
        members = [r for r in rows if r.bundle == f"b{i:04d}"]
        assert {r.bundle_mem_mb for r in members} == {sum(r.mem_mb for r in members)}
        assert plan.bundle_memory_gb(i) * 1024 - len(members) < members[0].bundle_mem_mb <= plan.bundle_memory_gb(i) * 1024
        assert [r.runtime_min for r in members] == [max(1, math.ceil(j.runtime_s / 60)) for j in plan.bundles[i]]
    assert [p.name for p in path.parent.iterdir()] == ["plan.csv"]  # no temporary left behind


def test_run_cli(tmp_path):
    jobs = random_jobs(31, 3)
    src = tmp_path / "jobs.csv"
    with open(src, "w") as fh:
        fh.write("visit,det_name,mem_gb,runtime_s\n")
        for j in jobs:
            fh.write(f"{j.visit},{j.det_name},{j.mem_gb},{j.runtime_s}\n")
    node = Node(20.0, 6, 2.0)
    summary = run_cli(src, tmp_path / "plan.csv", node, "auto", 5.0, summary_json=tmp_path / "plan.json")
    rows = read_plan(tmp_path / "plan.csv")
    assert len(rows) == len(jobs) and len({r.bundle for r in rows}) == summary.n_bundles
    record = json.loads((tmp_path / "plan.json").read_text())
    assert record["n_bundles"] == summary.n_bundles and record["method"] == summary.method
    assert record["ffd_bundles"] >= record["n_bundles"] >= record["lower_bound"]
    text = format_summary(summary)
    assert f"{summary.n_bundles} (lower bound {summary.lower_bound}" in text


def test_run_cli_writes_nothing_on_error(tmp_path):
    src = _write(tmp_path / "jobs.csv", "visit,det_name,mem_gb\n1001,R22_S11,99\n")
    with pytest.raises(BundlingError, match="visit 1001 R22_S11"):
        run_cli(src, tmp_path / "plan.csv", Node(16.0, 4, 1.0), "auto", 5.0, tmp_path / "plan.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["jobs.csv"]


def test_bad_visit_or_sensor_type():
    node = Node(16.0, 4, 1.0)
    with pytest.raises(BundlingError, match="visit 1001 R22_S11: the visit is not an integer"):
        plan_bundles([Job("1001", "R22_S11", 1.0)], node)
    with pytest.raises(BundlingError, match="sensor name is empty"):
        plan_bundles([Job(1001, "", 1.0)], node)


PLAN_HEADER = "bundle,visit,det_name,mem_mb,runtime_min,bundle_mem_mb\n"


@pytest.mark.parametrize("body,line,reason", [
    ("b0000,1,R22_S11,1024,1,1024\n", 1, "header is 'bundle,visit,sensor'"),        # an old plan
    ("b0000,1,R22_S11,1024,1\n", 2, "5 fields, not 6"),
    ("x0,1,R22_S11,1024,1,1024\n", 2, "bundle name 'x0' is not b0000"),
    ("b0000,1,R99_S11,1024,1,1024\n", 2, "det_name 'R99_S11' is not an LSSTCam science sensor"),
    ("b0000,one,R22_S11,1024,1,1024\n", 2, "column 'visit' is not an integer >= 0 ('one')"),
    ("b0000,1,R22_S11,0,1,0\n", 2, "column 'mem_mb' is not an integer >= 1 ('0')"),
    ("b0000,1,R22_S11,1024,1.5,1024\n", 2, "column 'runtime_min' is not an integer >= 1 ('1.5')"),
    ("b0000,1,R22_S11,1024,1,2048\nb0000,1,R22_S11,1024,1,2048\n", 3, "visit 1 R22_S11 is also on line 2"),
    ("b0000,1,R22_S11,1024,1,2048\nb0000,1,R22_S12,1024,1,3000\n", 3, "bundle_mem_mb 3000 differs from 2048"),
    ("b0000,1,R22_S11,1024,1,2048\nb0001,1,R22_S12,1024,1,1024\n", 2,
     "bundle b0000's bundle_mem_mb is 2048, its members' mem_mb add up to 1024"),
])
def test_read_plan_checks_every_row(tmp_path, body, line, reason):
    header = "bundle,visit,sensor\n" if line == 1 else PLAN_HEADER
    path = _write(tmp_path / "campaign.csv", header + body)
    with pytest.raises(BundlingError) as info:
        read_plan(path)
    assert f"{path}:{line}: {reason}" in str(info.value) and "rerun dc2flow bundle" in str(info.value)
    with pytest.raises(BundlingError, match="cannot read the plan"):
        read_plan(tmp_path / "none.csv")


def test_atmospheric_screens_count_once_per_visit_in_a_bundle(tmp_path):
    """The estimates' visit_shared_gb (a visit's memory-mapped phase screens) is added to the visit
    overhead: a bundle of 4 sensors of one atmospheric visit asks for it once, on its first sensor,
    not 4 times; a bundle holding two visits asks for it twice."""
    from dc2flow.estimate import ESTIMATE_COLUMNS
    from dc2flow.packing import read_plan, run_cli

    def table(path, visit, sensors, shared):
        lines = ["\t".join(ESTIMATE_COLUMNS)]
        for name in sensors:
            row = {"visit": str(visit), "det_name": name, "mem_gb": "1.0", "runtime_s": "60", "visit_shared_gb": shared}
            lines.append("\t".join(row.get(c, "0") for c in ESTIMATE_COLUMNS))
        path.write_text("\n".join(lines) + "\n")
        return path

    sensors = ["R22_S10", "R22_S11", "R22_S12", "R22_S20"]
    node = Node(memory_gb=16.0, cores=8, visit_overhead_gb=0.5)
    one = table(tmp_path / "1.tsv", 1, sensors, "0.8")
    run_cli([one], tmp_path / "plan.csv", node, "auto", 5.0)
    rows = read_plan(tmp_path / "plan.csv")
    assert len({r.bundle for r in rows}) == 1
    assert [r.mem_mb for r in rows] == [int((1.0 + 0.5 + 0.8) * 1024)] + [1024] * 3
    assert rows[0].bundle_mem_mb == int(2.3 * 1024) + 3 * 1024            # 4 sensors + the screens once
    two = table(tmp_path / "2.tsv", 2, sensors[:2], "0.8")
    run_cli([one, two], tmp_path / "plan2.csv", node, "auto", 5.0)
    rows = read_plan(tmp_path / "plan2.csv")
    assert len({r.bundle for r in rows}) == 1 and sum(r.mem_mb > 2000 for r in rows) == 2
    # parametric visits (visit_shared_gb 0 or no such column) pay only bundle.visit_overhead_gb
    plain = table(tmp_path / "3.tsv", 3, sensors, "0")
    run_cli([plain], tmp_path / "plan3.csv", node, "auto", 5.0)
    assert read_plan(tmp_path / "plan3.csv")[0].mem_mb == int(1.5 * 1024)
    bad = table(tmp_path / "4.tsv", 4, sensors[:2], "0.8")
    bad.write_text(bad.read_text().replace("\t0.8\n", "\t0.7\n", 1))
    with pytest.raises(EstimateError, match=r"4\.tsv:3: visit 4's visit_shared_gb differs from its first row's \(0.7\)"):
        run_cli([bad], tmp_path / "plan4.csv", node, "auto", 5.0)
