#!/usr/bin/env python
"""Profile ``dc2flow render`` on a typical and a dense sensor: wall time, peak RSS, where time goes.

What is measured, and how
-------------------------
1. *Scenes* (set-up, not timed): the presets of ``render_vs_galsim.py`` (:data:`SCENES`), made by
   its :func:`make_scene` (``dc2flow.synthetic.make_catalog``, ``dc2flow parse``, ``dc2flow
   partition``) for R22_S11: ``typical`` is that benchmark's scene (~130 stars, ~2200 galaxies of
   bulge + disk + knots, 4 bright stars), ``dense`` has four times the density and three more bright
   stars of magnitude 12.5-14 whose stamps reach the ``max_stamp_radius_px`` cap.
2. *Timing*: ``dc2flow render`` (noise on, the catalog's seed) runs ``--repeat`` times as a
   subprocess under ``/usr/bin/time -v``, single-threaded; the median and minimum wall time, the
   median CPU time (user + system: steadier when other jobs share the cores) and the median peak
   RSS are printed.  No profiler is attached to these runs.
3. *Pixels*: the sha256 of every run's image data (the float32 pixel bytes, not the file, whose
   header holds versions and paths) and of its uncompressed truth table are printed; all runs of a
   scene must agree.  ``--save-hashes FILE`` writes them as JSON and ``--check-hashes FILE``
   compares against such a file (exit 1 on a difference): the check that a speed-up leaves the
   pixels bit-identical.
4. *Profile*: one more run under ``cProfile`` (in a subprocess; the profiler roughly doubles the
   time of Python-heavy code, so read its figures as shares, not as wall time).  Printed: the
   time per phase of :func:`dc2flow.render.render_sensor` (imports, reading the partition, building GalSim objects, FFT and photon-shooting draws, sky + Poisson noise, the
   truth table, the FITS file), then the top functions by cumulative and by own (self) time.
   The ``.prof`` file is kept in the work directory for ``snakeviz`` or ``pstats``.

Usage::

    python benchmarks/render_profile.py                         # both scenes, 3 timed runs each
    python benchmarks/render_profile.py --scenes dense --repeat 1 --top 40 --workdir /tmp/prof
    python benchmarks/render_profile.py --workdir /tmp/prof --save-hashes before.json   # then change code
    python benchmarks/render_profile.py --workdir /tmp/prof --check-hashes before.json --no-profile
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from render_vs_galsim import (DET_NAME, SCENES, SINGLE_THREAD_ENV, TIME_BIN, Scene,  # noqa: E402
                              dc2flow_command, make_scene, timed_run)

# Phases of one render: (label, functions whose cumulative times add up to it).  A function is
# (file name ending, function name).  Imports are a phase of their own, "other" is what is left.
PHASES = (
    ("read the partition", (("dc2flow/partition.py", "read_partition_table"),)),
    ("build GalSim objects", (("dc2flow/partition.py", "build_object"),)),
    ("draw by FFT (bright)", (("galsim/gsobject.py", "drawFFT"), ("galsim/gsobject.py", "drawReal"))),
    ("photon-shoot (faint)", (("galsim/gsobject.py", "drawPhot"),)),
    ("sky + Poisson noise", (("dc2flow/render.py", "_poisson_in_place"),)),
    ("truth table", (("dc2flow/render.py", "write_truth"),)),
    ("FITS header + write", (("dc2flow/render.py", "fits_header"), ("dc2flow/render.py", "write_fits"))),
)


def pixel_hashes(image: Path, truth: Path) -> dict[str, str]:
    """sha256 of the image's pixel bytes (big-endian float32 as stored) and of the uncompressed truth table."""
    from astropy.io import fits

    with fits.open(image) as hdul:
        data = hdul[0].data
        pixels = hashlib.sha256(data.dtype.str.encode() + str(data.shape).encode() + data.tobytes()).hexdigest()
    with gzip.open(truth, "rb") as fh:
        table = hashlib.sha256(fh.read()).hexdigest()
    return {"pixels": pixels, "truth": table}


def profile_run(scene: Scene, workdir: Path) -> Path:
    """Run ``dc2flow render`` under cProfile in a subprocess; returns the .prof file."""
    exe = shutil.which("dc2flow")
    out = workdir / "render.prof"
    cmd = [sys.executable, "-m", "cProfile", "-o", str(out), exe, *dc2flow_command(scene, "profiled.fits")[1:]]
    env = {**os.environ, **SINGLE_THREAD_ENV}
    with open(workdir / "profiled.log", "w") as log:
        subprocess.run(cmd, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT, check=True)
    return out


def _cumtime(stats: pstats.Stats, wanted) -> float:
    """Summed cumulative time of the functions ``wanted`` ((file ending, name) pairs)."""
    total = 0.0
    for (filename, _line, name), (_cc, _nc, _tt, ct, _callers) in stats.stats.items():
        if any(filename.endswith(f) and name == n for f, n in wanted):
            total += ct
    return total


def print_profile(prof: Path, top: int) -> None:
    """Phases, then the top functions by cumulative and by self time."""
    stats = pstats.Stats(str(prof))
    total = stats.total_tt
    # every import, wherever it happens (galsim is imported inside render_sensor)
    rows = [("imports (galsim, astropy, pyarrow, ...)", _cumtime(stats, (("<frozen importlib._bootstrap>",
                                                                           "_find_and_load"),)))]
    rows += [(label, _cumtime(stats, funcs)) for label, funcs in PHASES]
    rows.append(("other (options, WCS, draw loop, seeds, ...)", total - sum(t for _, t in rows)))
    print(f"  profiled run: {total:.2f} s (cProfile overhead included)")
    for label, t in rows:
        print(f"    {label:<44} {t:7.2f} s {100 * t / total:5.1f}%")
    for key, title in (("cumulative", "cumulative"), ("tottime", "self")):
        buf = io.StringIO()
        pstats.Stats(str(prof), stream=buf).strip_dirs().sort_stats(key).print_stats(top)
        lines = buf.getvalue().splitlines()
        start = next(i for i, ln in enumerate(lines) if ln.lstrip().startswith("ncalls"))
        print(f"  top {top} by {title} time:")
        for ln in lines[start:]:
            if ln.strip():
                print("    " + ln)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="See the module docstring for what is measured and how.")
    p.add_argument("--scenes", nargs="+", choices=tuple(SCENES), default=list(SCENES),
                   help="scene presets to run [default: all]")
    p.add_argument("--repeat", type=int, default=3, help="timed runs per scene [default: 3]")
    p.add_argument("--top", type=int, default=25, help="functions listed per ranking [default: 25]")
    p.add_argument("--no-profile", dest="profile", action="store_false", help="time and hash only")
    p.add_argument("--workdir", type=Path,
                   help="keep the scenes, images and profiles here (the scenes are made again each "
                        "time, so that the partition stage is checked too) [default: a temporary folder, removed]")
    p.add_argument("--save-hashes", type=Path, help="write the pixel and truth-table sha256s here (JSON)")
    p.add_argument("--check-hashes", type=Path, help="compare the sha256s with this file (from --save-hashes)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.repeat < 1:
        raise SystemExit("render_profile: error: --repeat must be >= 1.")
    for exe in ("dc2flow", TIME_BIN):
        if not shutil.which(exe):
            raise SystemExit(f"render_profile: error: {exe} not found; activate the dc2flow environment.")
    keep = args.workdir is not None
    root = (args.workdir or Path(tempfile.mkdtemp(prefix="dc2flow-profile-"))).resolve()
    expected = json.loads(args.check_hashes.read_text()) if args.check_hashes else {}
    hashes, ok = {}, True
    try:
        print(f"work directory: {root}", flush=True)
        for name in args.scenes:
            workdir = root / name
            workdir.mkdir(parents=True, exist_ok=True)
            star_density, galaxy_density, bright = SCENES[name]
            scene = make_scene(workdir, star_density, galaxy_density, True, bright)
            c = scene.counts
            print(f"\n== {name}: {DET_NAME}, {c['stars']} stars ({len(bright)} bright), {c['galaxies']} galaxies "
                  f"({c['sersic2d_components']} sersic2d + {c['knots_components']} knots); "
                  f"{c['partition_rows']} partition rows, {c['stamp_pixels_M']:.1f} Mpx of stamps ==", flush=True)
            runs, seen = [], set()
            for i in range(args.repeat):
                run = timed_run(dc2flow_command(scene, f"run{i}.fits"), workdir, f"run{i}")
                h = pixel_hashes(workdir / f"run{i}.fits", workdir / f"run{i}_truth.txt.gz")
                seen.add((h["pixels"], h["truth"]))
                runs.append(run)
                print(f"  run {i + 1}/{args.repeat}: {run.wall_s:6.2f} s wall {run.cpu_s:6.2f} s CPU "
                      f"{run.max_rss_mb:6.0f} MB  "
                      f"pixels {h['pixels'][:16]}  truth {h['truth'][:16]}", flush=True)
            walls = [r.wall_s for r in runs]
            print(f"  wall median {statistics.median(walls):.2f} s, min {min(walls):.2f} s; CPU median "
                  f"{statistics.median(r.cpu_s for r in runs):.2f} s; "
                  f"peak RSS median {statistics.median(r.max_rss_mb for r in runs):.0f} MB")
            if len(seen) != 1:
                print("  NOT DETERMINISTIC: the runs' pixels or truth tables differ")
                ok = False
            hashes[name] = h
            if name in expected:
                same = expected[name] == h
                ok &= same
                print(f"  sha256 vs {args.check_hashes}: {'identical' if same else 'DIFFERENT'}")
            if args.profile:
                print_profile(profile_run(scene, workdir), args.top)
                ph = pixel_hashes(workdir / "profiled.fits", workdir / "profiled_truth.txt.gz")
                if ph != h:
                    print("  the profiled run's pixels differ from the timed runs'")
                    ok = False
        if args.save_hashes:
            args.save_hashes.write_text(json.dumps(hashes, indent=1, sort_keys=True) + "\n")
            print(f"\nsha256s written to {args.save_hashes}")
        return 0 if ok else 1
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
