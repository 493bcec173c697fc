"""Atmospheric PSF: what N render processes of one visit hold when they share memory-mapped screens.

The parent builds the visit's screens once and writes them (``dc2flow.atmpsf.write_screens``, what the
``build_screens`` job does).  Then, for each mode, it starts N fresh Python processes side by side (as a
bundle runs its sensors' ``dc2flow render`` processes) and reads each one's ``/proc/<pid>/smaps_rollup``
while all N are alive, after every process has drawn ``--stars`` photon-shot stars spread over the focal
plane (so the pages the photons reach are mapped):

* ``mapped``: each loads the screens with ``AtmosphericPsf(..., screens=screens.json)`` (np.load mmap_mode='r');
* ``own``: each builds its own screens in process (before this change, every render did);
* ``none``: each builds only the parametric PSF and draws the same stars: the baseline of a render.

Per process: RSS, PSS (RSS with each shared page divided by the processes mapping it), and PSS split
into anonymous (private heap) and file (the mapped screens) pages.  Sum of PSS over the N processes is
what the node really holds for them (page cache of the mapped files included).

    PYTHONPATH=workflow python benchmarks/atm_share.py [--procs 3] [--stars 30] [--large]

Default: the tests' 204.8 m at 0.2 m; ``--large`` adds 819.2 m at 0.2 m (~20 s and ~1.7 GB per build).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

SEEING, BAND, ALTITUDE, EXPTIME, SEED = 0.69, "r", 56.4, 30.0, 4242


def _atmosphere(size: float, scale: float, screens: str | None):
    import galsim

    from dc2flow import atmpsf, psf

    x = psf.airmass_ks(ALTITUDE)
    return atmpsf.AtmosphericPsf(SEEING, BAND, x, EXPTIME, psf.fwhm_geom(SEEING, BAND, x), SEED,
                                 atmpsf.AtmosphereSettings(size, scale), galsim.GSParams(maximum_fft_size=8192),
                                 screens=screens)


def _child(mode: str, size: float, scale: float, screens: str, n_stars: int) -> None:
    """One render-like process: set up the PSF, draw stars over the field, report, wait to be read."""
    import galsim
    import numpy as np

    from dc2flow import psf

    t = time.perf_counter()
    if mode == "none":
        model = psf.PsfModel.for_visit(SEEING, BAND, ALTITUDE).galsim(galsim.GSParams(maximum_fft_size=8192))
        make = lambda u, v: model  # noqa: E731
    else:
        atm = _atmosphere(size, scale, screens if mode == "mapped" else None)
        make = atm.psf
    setup_s = time.perf_counter() - t
    pos = np.random.default_rng(0).uniform(-6000, 6000, (n_stars, 2))
    t = time.perf_counter()
    total = 0.0
    for k, (u, v) in enumerate(pos):
        img = make(u, v).withFlux(1e5).drawImage(nx=41, ny=41, scale=0.2, method="phot", rng=galsim.BaseDeviate(k + 1))
        total += float(img.array.sum())
    print(json.dumps({"setup_s": round(setup_s, 2), "draw_s": round(time.perf_counter() - t, 2), "flux": total}),
          flush=True)
    sys.stdin.readline()   # the parent reads /proc/<pid>/smaps_rollup, then lets us go


def _rollup(pid: int) -> dict:
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as fh:
        for line in fh:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                out[parts[0].rstrip(":")] = int(parts[1]) / 1024.0
    return out


def _run(mode: str, size: float, scale: float, screens: str, n_procs: int, n_stars: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, __file__, "--child", mode, str(size), str(scale), screens, str(n_stars)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
             for _ in range(n_procs)]
    reports = [json.loads(p.stdout.readline()) for p in procs]
    rollups = [_rollup(p.pid) for p in procs]
    for p in procs:
        p.stdin.write("\n")
        p.stdin.flush()
        p.wait()
    keys = ("Rss", "Pss", "Pss_Anon", "Pss_File", "Shared_Clean", "Private_Dirty")
    per = [{k: round(r.get(k, 0.0), 1) for k in keys} for r in rollups]
    return {"mode": mode, "procs": n_procs, "per_process_mb": per,
            "sum_pss_mb": round(sum(r["Pss"] for r in per), 1),
            "setup_s": [r["setup_s"] for r in reports], "draw_s": [r["draw_s"] for r in reports],
            "same_pixels_in_all": len({r["flux"] for r in reports}) == 1}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        mode, size, scale, screens, n_stars = sys.argv[2:7]
        _child(mode, float(size), float(scale), screens, int(n_stars))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--procs", type=int, default=3)
    ap.add_argument("--stars", type=int, default=30)
    ap.add_argument("--large", action="store_true", help="also 819.2 m at 0.2 m")
    args = ap.parse_args()
    from dc2flow import atmpsf

    for size, scale in [(204.8, 0.2)] + ([(819.2, 0.2)] if args.large else []):
        with tempfile.TemporaryDirectory() as tmp:
            screens = os.path.join(tmp, "screens.json")
            t = time.perf_counter()
            record = atmpsf.write_screens(_atmosphere(size, scale, None), screens)
            build_s = time.perf_counter() - t
            settings = atmpsf.AtmosphereSettings(size, scale)
            print(json.dumps({"screen_size_m": size, "screen_scale_m": scale, "build_and_write_s": round(build_s, 2),
                              "files_mb": round(sum(a["bytes"] for a in record["arrays"].values()) / 2**20, 1),
                              "shared_memory_gb (model)": round(settings.shared_memory_gb, 3),
                              "render_private_gb (model)": round(settings.render_private_gb, 3)}), flush=True)
            for mode in ("none", "mapped", "own"):
                print(json.dumps(_run(mode, size, scale, screens, args.procs, args.stars)), flush=True)


if __name__ == "__main__":
    main()
