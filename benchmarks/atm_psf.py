"""Atmospheric PSF: build time and peak memory per visit, and the time to draw stars with it.

Each screen setting is built in its own child process, so its peak RSS right after the build
(getrusage of the child) is the atmosphere's plus GalSim's import (``rss_before_build_mb``); tracemalloc's peak counts the numpy side.  Then N
photon-shot stars are drawn with it and with the parametric PSF of the same FWHMgeom.

    PYTHONPATH=workflow python benchmarks/atm_psf.py [--stars 50] [--flux 1e5] [--realistic]

Default settings: the tests' 204.8 m at 0.2 m and 819.2 m at 0.2 m; ``--realistic`` adds imSim's
819.2 m at 0.1 m (~10 GB peak, minutes).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import time


def _one(size: float, scale: float, n_stars: int, flux: float, queue) -> None:
    import tracemalloc

    import galsim
    import numpy as np

    from dc2flow import atmpsf, psf, validation

    seeing, band, altitude, exptime = 0.69, "r", 56.4, 30.0
    x = psf.airmass_ks(altitude)
    geom = psf.fwhm_geom(seeing, band, x)
    gsparams = galsim.GSParams(maximum_fft_size=8192)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    t = time.perf_counter()
    atm = atmpsf.AtmosphericPsf(seeing, band, x, exptime, geom, 4242, atmpsf.AtmosphereSettings(size, scale), gsparams)
    build_s = time.perf_counter() - t
    traced_peak = tracemalloc.get_traced_memory()[1]
    rss_built = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.stop()
    rng = np.random.default_rng(0)
    pos = rng.uniform(-6000, 6000, (n_stars, 2))

    def draw(make):
        t = time.perf_counter()
        out = []
        for k, (u, v) in enumerate(pos):
            img = make(u, v).withFlux(flux).drawImage(nx=41, ny=41, scale=0.2, method="phot",
                                                      rng=galsim.BaseDeviate(k + 1))
            m = galsim.hsm.FindAdaptiveMom(img)
            out.append((m.moments_sigma * validation.FWHM_PER_SIGMA * 0.2, m.observed_shape.e))
        return time.perf_counter() - t, np.array(out)

    atm.psf(0.0, 0.0).withFlux(10).drawImage(nx=11, ny=11, scale=0.2, method="phot")   # second-kick table
    atm_s, atm_m = draw(atm.psf)
    model = psf.PsfModel.for_visit(seeing, band, altitude)
    par = model.galsim(gsparams)
    par_s, _ = draw(lambda u, v: par)
    model_moments, _ = validation.model_psf_figures(model, 0.2)
    expected = atm.fft_psf.drawImage(nx=41, ny=41, scale=0.2)
    expected_moments = galsim.hsm.FindAdaptiveMom(expected).moments_sigma * validation.FWHM_PER_SIGMA * 0.2
    e = atm_m[:, 1]
    queue.put({
        "screen_size_m": size, "screen_scale_m": scale, "build_s": round(build_s, 2),
        "screen_mb": round(atm.screen_bytes / 2**20, 1), "tracemalloc_peak_mb": round(traced_peak / 2**20, 1),
        "peak_rss_after_build_mb": round(rss_built / 1024, 1),
        "rss_before_build_mb": round(rss0 / 1024, 1),
        "fwhm_geom": round(geom, 4), "optics_fwhm": round(atm.optics_fwhm_arcsec, 4),
        "stars_true_fwhm_validation_way": round(float(np.median(atm_m[:, 0])) * model.fwhm_arcsec / model_moments, 4),
        "stars_moments_over_expected_psf_moments": round(float(np.median(atm_m[:, 0])) / expected_moments, 4),
        "e_median": round(float(np.median(e)), 4), "e_frac_above_0.07": round(float(np.mean(e > 0.07)), 3),
        f"draw_{n_stars}_stars_atm_s": round(atm_s, 2), f"draw_{n_stars}_stars_parametric_s": round(par_s, 2),
    })


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stars", type=int, default=50)
    ap.add_argument("--flux", type=float, default=1e5)
    ap.add_argument("--realistic", action="store_true", help="also imSim's 819.2 m at 0.1 m (~10 GB)")
    args = ap.parse_args()
    settings = [(204.8, 0.2), (819.2, 0.2)] + ([(819.2, 0.1)] if args.realistic else [])
    ctx = multiprocessing.get_context("spawn")
    for size, scale in settings:
        queue = ctx.Queue()
        proc = ctx.Process(target=_one, args=(size, scale, args.stars, args.flux, queue))
        proc.start()
        result = queue.get()
        proc.join()
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
