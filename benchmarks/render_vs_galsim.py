#!/usr/bin/env python
"""Benchmark ``dc2flow render`` against a plain GalSim config run by the ``galsim`` executable.

What is compared, and why
-------------------------
dc2flow's render stage is a thin layer over GalSim; this script checks what that layer costs or
saves compared with the obvious alternative, a GalSim YAML config, on the same full-sensor scene.

1. *Scene* (set-up, not timed): :func:`dc2flow.synthetic.make_catalog` writes a DC2-format
   instance catalog on a small cap around the boresight, dense enough that >= 100 stars and
   >= 2000 galaxies (distinct galaxies, each a bulge + a disk ``sersic2d`` and optionally a
   ``knots`` component) have their centres on R22_S11 (e2v, 4096 x 4004 pixels), plus a few bright
   stars so that dc2flow's FFT path and its largest stamps are exercised too.  ``dc2flow parse``
   and ``dc2flow partition`` then write the sensor's partition.
2. *The GalSim config* draws exactly the objects of that partition: one ASCII input catalog row
   per object (position, flux, Sersic n, half-light radius, axis ratio, position angle, reduced
   shear, magnification, knot count, stamp size) and ``image: type: Scattered`` of 4096 x 4004
   pixels with the same local WCS Jacobian dc2flow uses, the same PSF (Kolmogorov (x) Gaussian),
   the same sky level and Poisson noise, and per-object stamps of 2 r + 1 pixels with r the
   partition's ``stamp_radius_px``.  Objects are picked by ``type: List`` indexed by a catalog
   column (0 DeltaFunction, 1 Sersic, 2 RandomKnots).  GalSim's default draw method (``auto``,
   i.e. FFT or real space for every object) is used unless ``--galsim-draw-method match``, which
   photon-shoots the objects dc2flow photon-shoots (flux <= ``render.fft_flux_threshold``).
3. *Timing*: each tool runs as a subprocess under ``/usr/bin/time -v`` (wall clock, maximum
   resident set size, and user + system CPU time, steadier when other jobs share the cores),
   ``--repeat`` times, alternating the two; the median and the minimum are
   reported.  Both run single-threaded (``OMP_NUM_THREADS`` and friends = 1; GalSim ``nproc: 1``).
4. *Same scene?*  A benchmark of two different scenes would be meaningless, so both tools first
   render a noiseless version (untimed; it also warms the file cache), whose source counts
   (image - sky, summed) must agree within ``--tolerance`` and whose 16 x 16-binned images must
   correlate (r > 0.9), over all pixels and again with every star's stamp masked (else a few
   bright stars dominate both numbers); for the timed, noisy images the background medians
   must agree to 0.1%.  The script exits 1 when a check fails.

Differences that remain, by design: dc2flow photon-shoots faint objects (that is the point of
its ``fft_flux_threshold``) where GalSim's ``auto`` draws every stamp by FFT; knots are random
realisations seeded differently; GalSim config builds all stamps before adding them to the image,
dc2flow draws into the image in place.

Usage::

    python benchmarks/render_vs_galsim.py                  # 3 repeats in a temporary folder
    python benchmarks/render_vs_galsim.py --repeat 5 --workdir /tmp/bench   # keep the files
    python benchmarks/render_vs_galsim.py --scene dense    # 4x the objects, 3 more very bright stars

The printed command lines can be pasted into ``hyperfine`` or ``/usr/bin/time -v``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DET_NAME = "R22_S11"
VISIT = 9001
RA_DEG, DEC_DEG, BAND, SEED = 55.0, -30.0, "r", 9001
CAP_RADIUS_DEG = 0.17           # covers the whole of R22_S11 (half-diagonal 0.159 deg)
MIN_STARS, MIN_GALAXIES = 100, 2000
# (dRA*cos(dec), dDec) in degrees from the boresight and magnorm: all on R22_S11.
BRIGHT_STARS = ((0.05, 0.04, 15.0), (-0.06, 0.02, 16.5), (0.02, -0.07, 18.0), (-0.03, -0.05, 19.5))
# Scene presets: stars and galaxies per square degree on the cap, and the bright stars.  "dense"
# has four times the density of "typical" (~520 stars, ~9000 galaxies on the sensor) and three more
# bright stars (mag 12.5-14), whose stamps reach the partition's max_stamp_radius_px cap.
SCENES = {
    "typical": (2500.0, 45000.0, BRIGHT_STARS),
    "dense": (10000.0, 180000.0, BRIGHT_STARS + ((0.07, -0.02, 12.5), (-0.02, 0.06, 13.5), (-0.07, -0.06, 14.0))),
}
KIND_CODES = {"point": 0, "sersic2d": 1, "knots": 2}
CATALOG_COLUMNS = ("x", "y", "kind", "flux", "sersic_n", "hlr_arcsec", "q", "beta_deg", "g1", "g2",
                   "dilate", "npoints", "stamp_size", "obj_index")
SINGLE_THREAD_ENV = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                            "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")}
TARGETS = {"wall": 0.9, "rss": 1.0}     # dc2flow / GalSim ratios we aim for
TIME_BIN = "/usr/bin/time"


@dataclass(frozen=True)
class Run:
    """One timed subprocess: wall-clock seconds, peak resident set size (MB) and CPU seconds
    (user + system: less disturbed than the wall time when other jobs share the cores)."""

    wall_s: float
    max_rss_mb: float
    cpu_s: float = float("nan")


@dataclass(frozen=True)
class Scene:
    """The set-up files (paths relative to the work directory) and the object counts."""

    visit_json: str
    sources_json: str
    partition: str
    counts: dict


# ---------------------------------------------------------------------------------------------
# Scene


def make_scene(workdir: Path, star_density: float, galaxy_density: float, knots: bool,
               bright_stars=BRIGHT_STARS) -> Scene:
    """Write the catalog, parse and partition it for :data:`DET_NAME` (not timed).

    ``bright_stars`` are (dRA cos(dec), dDec) offsets from the boresight in degrees and magnorm.

    Raises:
        SystemExit: when fewer than MIN_STARS stars or MIN_GALAXIES galaxies land on the sensor.
    """
    from dc2flow.synthetic import make_catalog

    cos_dec = math.cos(math.radians(DEC_DEG))
    bright = [(RA_DEG + dx / cos_dec, DEC_DEG + dy, mag) for dx, dy, mag in bright_stars]
    main = Path(make_catalog(outdir=workdir / "catalog", visit=VISIT, ra_deg=RA_DEG, dec_deg=DEC_DEG,
                             band=BAND, seed=SEED, radius_deg=CAP_RADIUS_DEG, star_density=star_density,
                             galaxy_density=galaxy_density, bright_stars=bright))
    if not knots:
        lines = [ln for ln in main.read_text().splitlines() if not ln.startswith("includeobj knots_")]
        main.write_text("\n".join(lines) + "\n")
    setup = [
        ["dc2flow", "parse", str(main.relative_to(workdir)), "--visit-json", "visit.json",
         "--objects", "objects.parquet", "--sources", "sources.json"],
        ["dc2flow", "partition", "visit.json", "objects.parquet", "--out-dir", "partitions",
         "--sensors", DET_NAME],
    ]
    for cmd in setup:
        subprocess.run(cmd, cwd=workdir, check=True, env=_env())
    partition = f"partitions/{DET_NAME}.parquet"
    counts = count_objects(workdir / partition)
    if counts["stars"] < MIN_STARS or counts["galaxies"] < MIN_GALAXIES:
        raise SystemExit(f"render_vs_galsim: error: only {counts['stars']} stars and {counts['galaxies']} "
                         f"galaxies on {DET_NAME} (need {MIN_STARS} and {MIN_GALAXIES}); raise "
                         "--star-density / --galaxy-density.")
    counts["bright_stars"] = len(bright_stars)
    return Scene("visit.json", "sources.json", partition, counts)


def count_objects(partition: Path) -> dict:
    """Objects in the partition, and those whose centre is on the sensor, by kind."""
    from dc2flow import camera
    from dc2flow.partition import read_partition

    sensor = camera.get_sensor(DET_NAME)
    table = read_partition(partition)
    on = ((table["x"] > 0.5) & (table["x"] < sensor.nx + 0.5)
          & (table["y"] > 0.5) & (table["y"] < sensor.ny + 0.5)).to_numpy()
    kind = table["obj_type"].to_numpy()
    galaxy_ids = table["id"].astype("int64").to_numpy() // 1024   # DC2 ids: galaxy * 1024 + component
    return {
        "partition_rows": int(len(table)),
        "stars": int((on & (kind == "point")).sum()),
        "galaxies": int(len(np.unique(galaxy_ids[on & (kind == "sersic2d")]))),
        "sersic2d_components": int((on & (kind == "sersic2d")).sum()),
        "knots_components": int((on & (kind == "knots")).sum()),
        "stamp_pixels_M": float(((2 * table["stamp_radius_px"].to_numpy(np.int64) + 1) ** 2).sum() / 1e6),
    }


# ---------------------------------------------------------------------------------------------
# The GalSim config


def write_galsim_config(workdir: Path, scene: Scene, draw_method: str, noise: bool, name: str) -> str:
    """Write the input catalog (once) and a GalSim YAML config drawing the partition; returns its name.

    The catalog holds one row per partition object, in ``obj_index`` order, with the shape
    parameters computed exactly as :func:`dc2flow.partition.build_object` does (Sersic n rounded to
    0.05 and clipped, half-light radius sqrt(a b), q = b/a, beta = 90 - pa, reduced shear
    g = (gamma1, -gamma2) / (1 - kappa), magnification mu as a flux-preserving dilation sqrt(mu),
    since dc2flow sets the flux after lensing).
    """
    import yaml

    from dc2flow import camera
    from dc2flow.config import parse_options

    options = parse_options(None)
    catalog = "galsim_objects.txt"
    if not (workdir / catalog).exists():
        _write_galsim_catalog(workdir / scene.partition, workdir / catalog)
    conditions, wcs_file = _conditions_and_wcs(workdir / scene.visit_json, options, workdir)
    sensor = camera.get_sensor(DET_NAME)
    col = {c: i for i, c in enumerate(CATALOG_COLUMNS)}

    def cat(c: str) -> dict:
        return {"type": "Catalog", "col": col[c]}

    flux = cat("flux")
    lensed = {"ellip": {"type": "QBeta", "q": cat("q"), "beta": {"type": "Deg", "theta": cat("beta_deg")}},
              "shear": {"type": "G1G2", "g1": cat("g1"), "g2": cat("g2")},
              "dilate": cat("dilate")}
    psf = conditions.psf
    image = {
        "type": "Scattered",
        "xsize": sensor.nx, "ysize": sensor.ny,
        "random_seed": SEED,
        "nproc": 1,
        # the same TAN-SIP header WCS dc2flow draws through: GalSim maps each object with its local
        # Jacobian at the object's position, as dc2flow does
        "wcs": {"type": "Fits", "file_name": wcs_file},
        "image_pos": {"type": "XY", "x": cat("x"), "y": cat("y")},
        "sky_level_pixel": conditions.sky_e_per_px,
    }
    if noise:
        image["noise"] = {"type": "Poisson"}
    if draw_method == "match":
        threshold = options["render"]["fft_flux_threshold"]
        method = {"type": "Eval", "str": f"'auto' if flux > {threshold!r} else 'phot'", "fflux": flux}
    else:
        method = "auto"
    config = {
        "input": {"catalog": {"file_name": catalog}},          # paths relative to the work directory
        "psf": {"type": "Convolve", "items": [{"type": "Kolmogorov", "fwhm": psf.atm_fwhm_arcsec},
                                               {"type": "Gaussian", "fwhm": psf.optics_fwhm_arcsec}]},
        "gal": {"type": "List", "index": cat("kind"), "items": [
            {"type": "DeltaFunction", "flux": flux},
            {"type": "Sersic", "n": cat("sersic_n"), "half_light_radius": cat("hlr_arcsec"), "flux": flux,
             **lensed},
            {"type": "RandomKnots", "npoints": cat("npoints"), "half_light_radius": cat("hlr_arcsec"),
             "flux": flux, **lensed},
        ]},
        "stamp": {"size": cat("stamp_size"), "draw_method": method},
        "image": image,
        "output": {"type": "Fits", "file_name": f"{name}.fits"},
    }
    header = (f"# GalSim config written by benchmarks/render_vs_galsim.py: the objects of {scene.partition}\n"
              f"# ({catalog}, columns {', '.join(f'{i}={c}' for i, c in enumerate(CATALOG_COLUMNS))}),\n"
              f"# kind 0 = point, 1 = sersic2d, 2 = knots.  Run: galsim {name}.yaml\n")
    text = yaml.dump(config, Dumper=_no_alias_dumper(), sort_keys=False)
    (workdir / f"{name}.yaml").write_text(header + text)
    return f"{name}.yaml"


def _no_alias_dumper():
    import yaml

    class NoAliasDumper(yaml.SafeDumper):
        """Writes a repeated sub-dict in full each time (no ``&id001`` anchors): easier to read."""

        def ignore_aliases(self, data):
            return True

    return NoAliasDumper


def _conditions_and_wcs(visit_json: Path, options: dict, workdir: Path):
    """dc2flow's PSF/sky for the visit, and a header-only FITS file holding the sensor's TAN-SIP WCS
    (the cards the partition step wrote to partitions/wcs.json)."""
    from astropy.io import fits

    from dc2flow import wcs
    from dc2flow.catalog import Visit
    from dc2flow.partition import VisitConditions

    visit = Visit.read_json(visit_json)
    cards = wcs.read_visit_cards(workdir / "partitions" / "wcs.json")["sensors"][DET_NAME]
    header = fits.Header()
    for key, value in cards.items():
        header[key] = value
    path = workdir / "galsim_wcs.fits"
    fits.PrimaryHDU(header=header).writeto(path, overwrite=True)
    return VisitConditions.from_visit(visit, options["scene"]), str(path.name)


def _write_galsim_catalog(partition: Path, out: Path) -> None:
    from dc2flow.partition import read_partition
    from dc2flow.partition import SERSIC_N_RANGE

    t = read_partition(partition)
    a, b = t["major_arcsec"].to_numpy(float), t["minor_arcsec"].to_numpy(float)
    kappa, gamma1, gamma2 = (t[c].to_numpy(float) for c in ("kappa", "gamma1", "gamma2"))
    mu = 1.0 / ((1.0 - kappa) ** 2 - (gamma1**2 + gamma2**2))
    kind = t["obj_type"].map(KIND_CODES).to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where((kind > 0) & (b < a), b / a, 1.0)
    columns = {
        "x": t["x"].to_numpy(float), "y": t["y"].to_numpy(float), "kind": kind,
        "flux": t["flux"].to_numpy(float),
        "sersic_n": np.clip(np.round(t["sersic_n"].to_numpy(float) * 20.0) / 20.0, *SERSIC_N_RANGE),
        "hlr_arcsec": np.where(kind > 0, np.sqrt(a * b), 1.0), "q": q,
        "beta_deg": 90.0 - t["pa_deg"].to_numpy(float),
        "g1": gamma1 / (1.0 - kappa), "g2": -gamma2 / (1.0 - kappa), "dilate": np.sqrt(mu),
        "npoints": np.maximum(t["npoints"].to_numpy(int), 1),
        "stamp_size": 2 * t["stamp_radius_px"].to_numpy(int) + 1,
        "obj_index": t["obj_index"].to_numpy(int),
    }
    data = np.column_stack([columns[c] for c in CATALOG_COLUMNS])
    fmt = ["%.4f", "%.4f", "%d", "%.6g", "%.2f", "%.6g", "%.6g", "%.5f", "%.7g", "%.7g", "%.7g", "%d", "%d", "%d"]
    np.savetxt(out, data, fmt=fmt, header=" ".join(CATALOG_COLUMNS))


# ---------------------------------------------------------------------------------------------
# Running and timing


def _env() -> dict:
    return {**os.environ, **SINGLE_THREAD_ENV}


def timed_run(cmd: list[str], workdir: Path, log_name: str) -> Run:
    """Run ``cmd`` in ``workdir`` under ``/usr/bin/time -v``; stdout+stderr go to ``log_name``."""
    time_file = workdir / f"{log_name}.time"
    with open(workdir / f"{log_name}.log", "w") as log:
        proc = subprocess.run([TIME_BIN, "-v", "-o", str(time_file), *cmd], cwd=workdir, env=_env(),
                              stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode:
        raise SystemExit(f"render_vs_galsim: error: {shlex.join(cmd)} exited {proc.returncode}; "
                         f"see {workdir / (log_name + '.log')}.")
    return parse_time_v(time_file.read_text())


def parse_time_v(text: str) -> Run:
    """Wall-clock seconds, maximum RSS (MB) and user + system CPU seconds from GNU ``time -v`` output."""
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", text)
    cpu = [re.search(rf"{kind} time \(seconds\): ([\d.]+)", text) for kind in ("User", "System")]
    if not (rss and wall):
        raise ValueError(f"not GNU time -v output: {text[:200]!r}")
    seconds = 0.0
    for part in wall.group(1).split(":"):
        seconds = seconds * 60.0 + float(part)
    cpu_s = sum(float(m.group(1)) for m in cpu) if all(cpu) else float("nan")
    return Run(wall_s=seconds, max_rss_mb=int(rss.group(1)) / 1024.0, cpu_s=cpu_s)


def dc2flow_command(scene: Scene, out: str, noise: bool = True) -> list[str]:
    cmd = ["dc2flow", "render", scene.visit_json, scene.partition, "--det-name", DET_NAME,
           "--sources", scene.sources_json, "--out", out, "--truth", out.replace(".fits", "_truth.txt.gz")]
    if not noise:
        cmd += ["--options", json.dumps({"render": {"noise": False}})]
    return cmd


# ---------------------------------------------------------------------------------------------
# Same scene?


def compare_images(workdir: Path, sky: float, noiseless: tuple[str, str], noisy: tuple[str, str],
                   tolerance: float) -> tuple[list[str], bool]:
    """Statistical agreement of the two tools' images; returns report lines and whether all pass.

    The noiseless source counts and the binned-pixel correlation are checked twice: over the
    whole image (dominated by the few bright stars) and with every star's stamp masked, so that
    the thousands of faint galaxies are checked on their own.
    """
    from astropy.io import fits

    def load(name):
        return fits.getdata(workdir / name).astype(np.float64)

    lines, ok = [], True
    d, g = (load(n) - sky for n in noiseless)
    galaxies = _galaxy_mask(workdir / "galsim_objects.txt", d.shape)
    for label, mask in (("all pixels", None), (f"star stamps masked ({galaxies.mean():.1%} of pixels)", galaxies)):
        dm, gm = (d, g) if mask is None else (d * mask, g * mask)
        sd, sg = dm.sum(), gm.sum()
        passed = abs(sd / sg - 1.0) <= tolerance
        r = np.corrcoef(_bin(dm, 16).ravel(), _bin(gm, 16).ravel())[0, 1]
        ok &= passed and r > 0.9
        lines.append(f"noiseless, {label}: source counts dc2flow {sd:.4g} e-, galsim {sg:.4g} e-, ratio "
                     f"{sd / sg:.4f} (within {tolerance:g}: {_verdict(passed)}); 16x16-binned correlation "
                     f"r = {r:.4f} (> 0.9: {_verdict(r > 0.9)})")
    del d, g
    d, g = (load(n) for n in noisy)
    md, mg = float(np.median(d)), float(np.median(g))
    passed = abs(md / mg - 1.0) < 1e-3
    ok &= passed
    lines.append(f"noisy: background median dc2flow {md:.2f}, galsim {mg:.2f}, sky {sky:.2f} e-/px "
                 f"(agree to 0.1%: {_verdict(passed)}); total counts ratio {d.sum() / g.sum():.6f} "
                 f"(sky-noise sigma of a sum {math.sqrt(sky * d.size):.3g} e-)")
    return lines, ok


def _galaxy_mask(catalog: Path, shape: tuple[int, int]) -> np.ndarray:
    """1 outside, 0 inside the stamps of the point sources of the GalSim input catalog."""
    col = {c: i for i, c in enumerate(CATALOG_COLUMNS)}
    table = np.loadtxt(catalog, ndmin=2)
    mask = np.ones(shape)
    for row in table[table[:, col["kind"]] == KIND_CODES["point"]]:
        r = int(row[col["stamp_size"]]) // 2
        ix, iy = int(math.floor(row[col["x"]] + 0.5)), int(math.floor(row[col["y"]] + 0.5))
        mask[max(iy - 1 - r, 0):max(iy + r, 0), max(ix - 1 - r, 0):max(ix + r, 0)] = 0.0
    return mask


def _bin(a: np.ndarray, n: int) -> np.ndarray:
    ny, nx = (a.shape[0] // n) * n, (a.shape[1] // n) * n
    return a[:ny, :nx].reshape(ny // n, n, nx // n, n).sum(axis=(1, 3))


def _verdict(passed: bool) -> str:
    return "ok" if passed else "FAILED"


# ---------------------------------------------------------------------------------------------
# Report


def report(runs: dict[str, list[Run]], scene: Scene, commands: dict[str, list[str]], workdir: Path,
           kept: bool, draw_method: str) -> None:
    """Print the table, the ratios against the targets, the counts and the command lines."""
    import galsim

    from dc2flow import camera

    sensor = camera.get_sensor(DET_NAME)
    med = {k: (statistics.median(r.wall_s for r in v), min(r.wall_s for r in v),
               statistics.median(r.max_rss_mb for r in v), statistics.median(r.cpu_s for r in v))
           for k, v in runs.items()}
    n = len(runs["dc2flow"])
    print(f"\n== dc2flow render vs galsim config: {DET_NAME} ({sensor.nx} x {sensor.ny} px), {n} runs each ==")
    print(f"GalSim {galsim.__version__}; single-threaded: "
          + " ".join(f"{k}=1" for k in SINGLE_THREAD_ENV) + ", galsim image.nproc=1; "
          f"galsim draw_method: {draw_method}")
    c = scene.counts
    print(f"objects: {c['stars']} stars ({c['bright_stars']} bright), {c['galaxies']} galaxies "
          f"({c['sersic2d_components']} sersic2d + {c['knots_components']} knots components) with centres "
          f"on the sensor; {c['partition_rows']} partition rows drawn; {c['stamp_pixels_M']:.1f} Mpx of stamps")
    print(f"\n{'tool':<10} {'wall s median':>14} {'wall s min':>11} {'peak RSS MB':>12} {'CPU s median':>13}")
    for tool, (wmed, wmin, rss, cpu) in med.items():
        print(f"{tool:<10} {wmed:>14.2f} {wmin:>11.2f} {rss:>12.0f} {cpu:>13.2f}")
    wall_ratio = med["dc2flow"][0] / med["galsim"][0]
    rss_ratio = med["dc2flow"][2] / med["galsim"][2]
    print(f"{'ratio':<10} {wall_ratio:>14.3f} {med['dc2flow'][1] / med['galsim'][1]:>11.3f} {rss_ratio:>12.3f}"
          f" {med['dc2flow'][3] / med['galsim'][3]:>13.3f}"
          "   (dc2flow / galsim)")
    print(f"targets: wall <= {TARGETS['wall']}x: {_verdict(wall_ratio <= TARGETS['wall'])}; "
          f"peak RSS <= {TARGETS['rss']}x: {_verdict(rss_ratio <= TARGETS['rss'])}")
    env = " ".join(f"{k}=1" for k in SINGLE_THREAD_ENV)
    where = "" if kept else "; removed at exit, rerun with --workdir DIR to keep the files"
    print(f"\ncommands (run in {workdir}{where}):")
    for tool, cmd in commands.items():
        print(f"  {tool:<8} {env} {TIME_BIN} -v {shlex.join(cmd)}")
    print(f"  hyperfine: cd {workdir} && {env} hyperfine -w 1 {shlex.quote(shlex.join(commands['dc2flow']))} "
          f"{shlex.quote(shlex.join(commands['galsim']))}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="See the module docstring for what is compared and why.")
    p.add_argument("--repeat", type=int, default=3, help="timed runs of each tool [default: 3]")
    p.add_argument("--workdir", type=Path, help="keep all files here [default: a temporary folder, removed]")
    p.add_argument("--scene", choices=tuple(SCENES), default="typical",
                   help="scene preset (densities and bright stars, see SCENES) [default: typical]")
    p.add_argument("--star-density", type=float,
                   help="stars per square degree on the cap [default: the preset's; typical: 2500, "
                        "~140 on the sensor]")
    p.add_argument("--galaxy-density", type=float,
                   help="galaxies per square degree on the cap [default: the preset's; typical: 45000, "
                        "~2280 on the sensor]")
    p.add_argument("--no-knots", dest="knots", action="store_false", help="leave out the knots components")
    p.add_argument("--galsim-draw-method", choices=("auto", "match"), default="auto",
                   help="'auto': GalSim's default for every object; 'match': photon-shoot what dc2flow "
                        "photon-shoots [default: auto]")
    p.add_argument("--tolerance", type=float, default=0.03,
                   help="allowed relative difference of the noiseless source counts [default: 0.03]")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.repeat < 1:
        raise SystemExit("render_vs_galsim: error: --repeat must be >= 1.")
    for exe in ("dc2flow", "galsim", TIME_BIN):
        if not shutil.which(exe):
            raise SystemExit(f"render_vs_galsim: error: {exe} not found; activate the dc2flow environment.")
    keep = args.workdir is not None
    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="dc2flow-bench-"))).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        print(f"work directory: {workdir}", flush=True)
        star_density, galaxy_density, bright_stars = SCENES[args.scene]
        scene = make_scene(workdir, args.star_density or star_density, args.galaxy_density or galaxy_density,
                           args.knots, bright_stars)
        cfg = write_galsim_config(workdir, scene, args.galsim_draw_method, noise=True, name="galsim")
        cfg0 = write_galsim_config(workdir, scene, args.galsim_draw_method, noise=False, name="galsim_noiseless")
        commands = {"dc2flow": dc2flow_command(scene, "dc2flow.fits"), "galsim": ["galsim", cfg]}

        print("noiseless check runs (untimed, also warm the caches) ...", flush=True)
        timed_run(dc2flow_command(scene, "dc2flow_noiseless.fits", noise=False), workdir, "dc2flow_noiseless")
        timed_run(["galsim", cfg0], workdir, "galsim_noiseless")

        runs: dict[str, list[Run]] = {"dc2flow": [], "galsim": []}
        for i in range(args.repeat):
            for tool, cmd in commands.items():
                run = timed_run(cmd, workdir, f"{tool}_{i}")
                runs[tool].append(run)
                print(f"  run {i + 1}/{args.repeat} {tool:<8} {run.wall_s:7.2f} s {run.max_rss_mb:7.0f} MB "
                      f"{run.cpu_s:7.2f} s CPU",
                      flush=True)

        from dc2flow.config import parse_options

        sky = _conditions_and_wcs(workdir / scene.visit_json, parse_options(None), workdir)[0].sky_e_per_px
        lines, ok = compare_images(workdir, sky, ("dc2flow_noiseless.fits", "galsim_noiseless.fits"),
                                   ("dc2flow.fits", "galsim.fits"), args.tolerance)
        report(runs, scene, commands, workdir, keep, args.galsim_draw_method)
        print("\nsame scene?")
        for line in lines:
            print("  " + line)
        if not ok:
            print("the two images disagree: the timings above compare different scenes.")
        return 0 if ok else 1
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
