"""Files: the jobs read from estimates, the plan CSV (:func:`write_plan`, :func:`read_plan`), the summary JSON
and ``dc2flow bundle`` (:func:`run_cli`)."""

from __future__ import annotations

import csv
import dataclasses
import os
import re
from typing import Sequence

from ..errors import BundlingError
from ..io import atomic_output, write_json
from .records import PLAN_COLUMNS, PLAN_COLUMNS_V1, Job, Node, Plan, PlanRow, Summary, exposure_words
from .planner import plan_bundles


def read_jobs(path: str | os.PathLike) -> list[Job]:
    """Read sensor jobs from an estimates table or any table with the columns ``visit``,
    ``det_name``, ``mem_gb`` and, optionally, ``snap`` (0 when absent) and ``runtime_s`` (CSV or
    tab-separated, with a header).

    The table is read by :func:`dc2flow.estimate.read_estimates`, the one reader of estimates,
    which checks every value.

    Raises:
        EstimateError: the file is missing or empty, a column is missing, or a value is not a
                       finite number >= 0 or not a science sensor; the message names ``file:line``.
    """
    return _read_jobs_and_shared(path)[0]


def read_visit_shared_gb(path: str | os.PathLike) -> dict[tuple[int, int], float]:
    """Each exposure's (visit, snap) ``visit_shared_gb`` in an estimates table (memory its renders
    share on a node: the memory-mapped atmospheric screens; 0 when the table has no such column).

    Raises:
        EstimateError: as :func:`read_jobs`, or the rows of one exposure disagree (``file:line``).
    """
    return _read_jobs_and_shared(path)[1]


def _read_jobs_and_shared(path: str | os.PathLike) -> tuple[list[Job], dict[tuple[int, int], float]]:
    """:func:`read_jobs` and :func:`read_visit_shared_gb` of one table, from one read of it."""
    from ..errors import EstimateError
    from ..estimate import JOB_COLUMNS, read_estimates

    rows = read_estimates(path, JOB_COLUMNS)
    shared: dict[tuple[int, int], float] = {}
    for lineno, row in enumerate(rows, start=2):
        value = shared.setdefault((row["visit"], row["snap"]), row["visit_shared_gb"])
        if value != row["visit_shared_gb"]:
            raise EstimateError(f"{os.fspath(path)}:{lineno}", f"{exposure_words(row['visit'], row['snap'])}'s "
                                f"visit_shared_gb differs from its first row's ({value:g})", row["visit_shared_gb"],
                                "rerun dc2flow estimate")
    return [Job(r["visit"], r["det_name"], r["mem_gb"], r["runtime_s"], r["snap"]) for r in rows], shared


def node_for_jobs(node: Node, shared_gb: dict[tuple[int, int], float]) -> Node:
    """The node with each exposure's (visit, snap) shared memory added to its visit overhead:
    ``visit_overhead_gb + max(shared_gb)``.  The packing charges one overhead per exposure in a
    bundle, the same for every exposure; a campaign has one scene config, so every exposure's screens
    are the same size and the maximum is exact (a mix would be charged the largest)."""
    extra = max(shared_gb.values(), default=0.0)
    if extra <= 0:
        return node
    if node.visit_overhead_gb + extra >= node.memory_gb:
        visit, snap = max(shared_gb, key=shared_gb.get)
        raise BundlingError(f"{exposure_words(visit, snap)}'s renders share {extra:g} GB (visit_shared_gb: its "
                            f"atmospheric screens), which with bundle.visit_overhead_gb {node.visit_overhead_gb:g} GB "
                            f"leaves no memory for sensors on a {node.memory_gb:g} GB node",
                            "use smaller screens (scene.atmosphere: screen_size, screen_scale) or bigger nodes")
    return dataclasses.replace(node, visit_overhead_gb=node.visit_overhead_gb + extra)


def write_plan(path: str | os.PathLike, plan: Plan) -> None:
    """Write the plan as CSV, one :class:`PlanRow` per sensor (header :data:`PLAN_COLUMNS`), atomically.

    Parameters:
        path:  the output file.
        plan:  the plan.
    """
    with atomic_output(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(PLAN_COLUMNS)
        writer.writerows(dataclasses.astuple(row) for row in plan.rows())  # PlanRow's fields are PLAN_COLUMNS


_BUNDLE_RE = re.compile(r"b[0-9]{4,}")


def read_plan(path: str | os.PathLike) -> list[PlanRow]:
    """Read a plan CSV (:func:`write_plan`) back, every value checked: the one reader of plans.

    A plan written before the ``snap`` column (header :data:`PLAN_COLUMNS_V1`) reads as snap 0.

    Raises:
        BundlingError: the file cannot be read, the header is not :data:`PLAN_COLUMNS` (or
                       :data:`PLAN_COLUMNS_V1`), a row has
                       the wrong number of fields, a bundle name, visit, sensor or request is
                       invalid, a sensor is listed twice, or a row's ``bundle_mem_mb`` is not the
                       sum of its bundle's ``mem_mb``; the message names ``file:line``.
    """
    from ..camera import DET_NAMES

    path = os.fspath(path)
    fix = "rerun dc2flow bundle (delete the plan to make Snakemake remake it)"
    try:
        fh = open(path, newline="")
    except OSError as exc:
        raise BundlingError(f"{path}: cannot read the plan ({exc.strerror})", "check the path") from None
    with fh:
        reader = csv.reader(fh)
        header = tuple(next(reader, []))
        if header not in (PLAN_COLUMNS, PLAN_COLUMNS_V1):
            raise BundlingError(f"{path}:1: header is {','.join(header)!r}, not {','.join(PLAN_COLUMNS)!r}", fix)
        numeric = [c for c in header if c not in ("bundle", "det_name")]
        rows: list[PlanRow] = []
        lines: dict[tuple[int, int, str], int] = {}
        totals: dict[str, list[int]] = {}
        for lineno, row in enumerate(reader, start=2):
            if len(row) != len(header):
                raise BundlingError(f"{path}:{lineno}: {len(row)} fields, not {len(header)} ({','.join(row)})", fix)
            cells = dict(zip(header, row))
            bundle, det_name = cells["bundle"], cells["det_name"]
            if not _BUNDLE_RE.fullmatch(bundle):
                raise BundlingError(f"{path}:{lineno}: bundle name {bundle!r} is not b0000, b0001, ...", fix)
            if det_name not in DET_NAMES:
                raise BundlingError(f"{path}:{lineno}: det_name {det_name!r} is not an LSSTCam science sensor", fix)
            values = {"snap": 0}
            for col in numeric:
                text, low = cells[col], 0 if col in ("visit", "snap") else 1
                try:
                    value = int(text) if text.isascii() else None
                except ValueError:
                    value = None
                if value is None or value < low:
                    raise BundlingError(f"{path}:{lineno}: column '{col}' is not an integer >= {low} ({text!r})", fix)
                values[col] = value
            entry = PlanRow(bundle=bundle, det_name=det_name, **values)
            key = (entry.visit, entry.snap, det_name)
            if key in lines:
                raise BundlingError(f"{path}:{lineno}: {exposure_words(entry.visit, entry.snap)} {det_name} is also on "
                                    f"line {lines[key]}", fix)
            lines[key] = lineno
            total = totals.setdefault(bundle, [entry.bundle_mem_mb, 0, lineno])
            if entry.bundle_mem_mb != total[0]:
                raise BundlingError(f"{path}:{lineno}: bundle_mem_mb {entry.bundle_mem_mb} differs from {total[0]} "
                                    f"on line {total[2]} (bundle {bundle})", fix)
            total[1] += entry.mem_mb
            rows.append(entry)
    for bundle, (want, got, lineno) in totals.items():
        if want != got:
            raise BundlingError(f"{path}:{lineno}: bundle {bundle}'s bundle_mem_mb is {want}, its members' mem_mb "
                                f"add up to {got}", fix)
    return rows


def write_summary_json(path: str | os.PathLike, summary: Summary) -> None:
    """Write the :class:`Summary` as JSON, atomically."""
    write_json(path, summary.to_dict())


def format_summary(summary: Summary) -> str:
    """The summary as a few human-readable lines (what ``dc2flow bundle`` prints)."""
    s = summary
    bounds = f"lower bound {s.lower_bound}, strong bound {s.strong_lower_bound}"
    if s.lp_bound is not None:
        bounds += f", solver bound {s.lp_bound}"
    flat = f"{s.dc2_flat_bundles}" if s.dc2_flat_bundles is not None else "does not fit a node"
    return "\n".join([
        f"jobs:         {s.n_jobs} sensors in {s.n_visits} visits",
        f"bundles:      {s.n_bundles} ({bounds}; gap {100 * s.gap:.1f}%)",
        f"compare:      first fit decreasing {s.ffd_bundles}, DC2 flat rule {flat}",
        f"utilisation:  memory {100 * s.mem_utilisation:.1f}%, cores {100 * s.core_utilisation:.1f}%",
        f"node-seconds: {s.node_seconds:.0f} (lower bound {s.node_seconds_bound:.0f})",
        f"method:       {s.method} with {s.solver} in {s.solve_time_s:.2f} s: {s.status}",
    ])


def run_cli(in_csv: str | os.PathLike | Sequence[str | os.PathLike], out_csv: str | os.PathLike, node: Node,
            solver: str, solve_time_limit_s: float, summary_json: str | os.PathLike | None = None) -> Summary:
    """``dc2flow bundle``: read the jobs, plan, write the plan (and summary); return the summary.

    Parameters:
        in_csv:              one jobs table or several (e.g. every ``estimates/{visit}.tsv``).
        out_csv:             the plan CSV to write.
        node:                the node shape; its ``visit_overhead_gb`` grows by the tables'
                             ``visit_shared_gb`` (:func:`node_for_jobs`).
        solver:              ``auto``, ``highs`` or ``cbc``.
        solve_time_limit_s:  the solver time budget, seconds.
        summary_json:        where to write the summary as JSON [default: None, not written].

    Returns:
        the :class:`Summary` (print it with :func:`format_summary`).

    Raises:
        BundlingError: unreadable or invalid jobs; nothing is written then.
    """
    paths = [in_csv] if isinstance(in_csv, (str, os.PathLike)) else list(in_csv)
    jobs: list[Job] = []
    shared: dict[tuple[int, int], float] = {}
    for path in paths:
        path_jobs, path_shared = _read_jobs_and_shared(path)
        jobs += path_jobs
        shared.update(path_shared)
    node = node_for_jobs(node, shared)
    plan, summary = plan_bundles(jobs, node, solver=solver, time_limit_s=solve_time_limit_s)
    write_plan(out_csv, plan)
    if summary_json is not None:
        write_summary_json(summary_json, summary)
    return summary
