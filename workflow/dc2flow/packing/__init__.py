"""Packing: pack every sensor job of a campaign into node-sized Slurm group jobs (bundles).

A campaign is visits x sensors, one render job ("sensor job") each, with a predicted peak memory
``mem_gb`` and wall time ``runtime_s`` from :mod:`dc2flow.estimate`.  A *bundle* is one Slurm node
running one group job.  All members of a bundle run side by side in **one parallel layer** (one
core each, no queueing inside the bundle), so a bundle of sensors ``b`` on a :class:`Node` with
``memory_gb`` M, ``cores`` C, ``visit_overhead_gb`` V and ``time_limit_s`` T is feasible when

* ``sum(mem_gb of b) + V * (distinct visits in b) <= M``: the sensors of one visit in one bundle
  share one catalog/SED/PSF set-up of V GB, paid once per visit present in the bundle (a
  "visit" here is an exposure, (visit, snap): each snap of a visit builds its own set-up, so two
  snaps of one visit in a bundle pay V twice; :attr:`Job.exposure`; ``dc2flow bundle`` adds the
  estimates' ``visit_shared_gb`` to ``bundle.visit_overhead_gb``: the exposure's memory-mapped
  atmospheric screens, :func:`node_for_jobs`);
* ``len(b) <= C``: one core per member;
* ``max(runtime_s of b) <= T``: the bundle lasts as long as its slowest member.

The plan minimises the number of bundles (nodes); among plans with that number it prefers the
one with the least node-seconds, ``sum over bundles of max(runtime_s)``, so slow sensors share a
node instead of each keeping one idle.  DC2 charged a flat 2 GB per sensor and 10 GB per visit and
never packed two visits together; :func:`dc2_flat_bundles` counts what that rule would need.

How a plan is found (:func:`plan_bundles`):

1. Heuristics: :func:`first_fit_decreasing` (FFD) over all jobs, and :func:`visit_first_fit`
   (first fit with the jobs grouped by visit, which pays far fewer overheads).
2. Up to ``milp_max_jobs`` jobs (default :data:`MILP_MAX_JOBS`): one integer program
   (:func:`solve_milp`) warm-started from the better heuristic, in two phases rather than one
   weighted objective: phase 1 minimises the bundle count and stops as soon as it meets its
   bound; phase 2 keeps that count and minimises node-seconds (no weight to tune, and phase 1
   keeps an integer objective the solver can prune on).
3. Above that, a decomposition: each block of ``block_visits`` visits is solved by the integer
   program on its own; the bundles that no other could join are kept and the partly filled ones
   are merged across visits by a second packing whose items are whole partial bundles (their
   memory includes their overheads, which add up because the visits differ, and their cores),
   an integer program or first fit when too large.  A local search then closes bundles one
   visit at a time, moving a few of the visit's sensors into other bundles' room
   (:func:`_spill`, the step that wins most) or re-solving the visit against that room
   (:func:`_reinsert`).  Merging whole partial bundles alone rarely saves anything: a visit of
   189 sensors on 32-core nodes leaves a partial bundle of 29 sensors, which nothing else fits.
4. Node-seconds: bundles holding the same visits are refilled slowest sensor first
   (:func:`_balance`), which usually meets :func:`node_seconds_bound`.
5. Whichever plan has fewer bundles wins (ties: fewer node-seconds), so the result is never worse
   than FFD.

The plan on disk (:func:`write_plan`) is a CSV with one row per sensor, the complete record of what
its render job asks for (:class:`PlanRow`: ``bundle,visit,snap,det_name,mem_mb,runtime_min,bundle_mem_mb``),
with bundles named ``b0000``, ``b0001``, ... in a deterministic order; :func:`read_plan` is its one
reader and checks it; :func:`write_summary_json` records how good it
is (:class:`Summary`).  Solves are single-threaded with fixed seeds, so the same jobs (in any
order) give the same plan, unless a solver time limit cuts a solve short: then the incumbent at
that moment, which depends on the machine's speed, is used.

Memory is compared with a tolerance of :data:`MEM_TOL_GB` (a kilobyte), the integer solvers'
feasibility tolerance.

The modules, one concern each, in the order they build on one another:

* :mod:`~dc2flow.packing.records`: :class:`Job`, :class:`Node`, :class:`Plan`, :class:`PlanRow`,
  :class:`Summary` and the constants;
* :mod:`~dc2flow.packing.bounds`: :func:`validate_jobs` and the lower bounds;
* :mod:`~dc2flow.packing.heuristics`: first fit (decreasing, visit-grouped), the runtime refill and
  DC2's flat rule;
* :mod:`~dc2flow.packing.milp`: the integer program over pulp and HiGHS or CBC (:func:`solve_milp`);
* :mod:`~dc2flow.packing.search`: the decomposition, merge and local search of large campaigns;
* :mod:`~dc2flow.packing.planner`: :func:`plan_bundles`, :func:`summarise`, :func:`check_plan`;
* :mod:`~dc2flow.packing.io`: the files (:func:`read_jobs`, :func:`write_plan`, :func:`read_plan`, ...)
  and ``dc2flow bundle`` (:func:`run_cli`).

This package re-exports their public names; import them from here.
"""

from .records import (DC2_SENSOR_GB, DC2_VISIT_GB, MEM_TOL_GB, MERGE_MILP_MAX_ITEMS, MILP_MAX_JOBS, PLAN_COLUMNS,
                      REPACK_ATTEMPT_S, REPACK_MAX_NODES, REPACK_RECEIVERS, RUNTIME_PHASE_SHARE, SOLVERS, Job, Node,
                      Plan, PlanRow, Summary, bundle_name)
from .bounds import lower_bound, node_seconds_bound, strong_lower_bound, validate_jobs
from .heuristics import dc2_flat_bundles, dc2_flat_size, first_fit_decreasing, visit_first_fit
from .milp import solve_milp
from .planner import check_plan, plan_bundles, summarise
from .io import (format_summary, node_for_jobs, read_jobs, read_plan, read_visit_shared_gb, run_cli, write_plan,
                 write_summary_json)

__all__ = [
    "DC2_SENSOR_GB", "DC2_VISIT_GB", "MEM_TOL_GB", "MERGE_MILP_MAX_ITEMS", "MILP_MAX_JOBS", "PLAN_COLUMNS",
    "REPACK_ATTEMPT_S", "REPACK_MAX_NODES", "REPACK_RECEIVERS", "RUNTIME_PHASE_SHARE", "SOLVERS",
    "Job", "Node", "Plan", "PlanRow", "Summary", "bundle_name",
    "lower_bound", "node_seconds_bound", "strong_lower_bound", "validate_jobs",
    "dc2_flat_bundles", "dc2_flat_size", "first_fit_decreasing", "visit_first_fit",
    "solve_milp", "check_plan", "plan_bundles", "summarise",
    "format_summary", "node_for_jobs", "read_jobs", "read_plan", "read_visit_shared_gb", "run_cli", "write_plan",
    "write_summary_json",
]
