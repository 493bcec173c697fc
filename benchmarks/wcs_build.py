"""What building imSim's WCS costs: per sensor (ray trace + TAN-SIP fit) and per visit (189 sensors).

    python benchmarks/wcs_build.py                     # visit 449053's pointing, all 189 sensors
    python benchmarks/wcs_build.py --sensors 20 --objects 100000

Prints, from one process (``time.perf_counter``, ``resource.getrusage``):

- the imports (astropy, batoid, erfa, galsim) and the first VisitWcs (loads the optics file,
  ERFA's constants, the boresight's observed place);
- per sensor: the field-angle grid's ray trace and ERFA inversion, and ``galsim.FittedSIPWCS``'s
  fit (median, min, max over the sensors);
- per visit: all sensors' WCS, as the partition job builds them once per visit;
- the exact chain ICRF -> focal plane for ``--objects`` positions (what the partition uses to
  assign objects to sensors) and the fitted TAN-SIP's ``radecToxy`` for the same number;
- the peak RSS of the process.

The render job does none of this: it reads the fitted cards from the partition's ``wcs.json``.
``python benchmarks/render_profile.py`` times the render itself (compare its figures across
commits with ``--save-hashes``/``--check-hashes``).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))

RA, DEC, ROTTEL = 54.3712096044475, -35.8373231129231, 24.3157942276737
MJD = 61017.0451099272 + 24.5 / 86400.0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sensors", type=int, default=189, help="how many sensors (in detector order)")
    parser.add_argument("--objects", type=int, default=30000, help="positions for the exact chain")
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    import numpy as np

    from dc2flow import camera, wcs
    import astropy.time  # noqa: F401
    import batoid  # noqa: F401
    import galsim  # noqa: F401
    t_imports = time.perf_counter() - t0

    t0 = time.perf_counter()
    vw = wcs.VisitWcs(RA, DEC, MJD, "r", ROTTEL)
    t_visit = time.perf_counter() - t0

    sensors = camera.SENSORS[: args.sensors]
    trace, fit = [], []
    t_all = time.perf_counter()
    for s in sensors:
        t0 = time.perf_counter()
        thx, thy = vw.field_samples(s)
        fx, fy = vw.field_to_focal(thx, thy)
        x, y = s.focal_plane_to_pixel(fx, fy)
        rc, dc = vw.field_to_icrf(thx, thy)
        t1 = time.perf_counter()
        galsim.FittedSIPWCS(x, y, rc, dc, order=vw.settings.sip_order)
        t2 = time.perf_counter()
        trace.append(t1 - t0)
        fit.append(t2 - t1)
    t_all = time.perf_counter() - t_all

    rng = np.random.default_rng(1)
    r = np.sqrt(rng.uniform(0, 1, args.objects)) * 1.75
    phi = rng.uniform(0, 2 * np.pi, args.objects)
    ra = RA + r * np.cos(phi) / np.cos(np.radians(DEC))
    dec = DEC + r * np.sin(phi)
    t0 = time.perf_counter()
    vw.icrf_to_focal(ra, dec)
    t_chain = time.perf_counter() - t0
    sip = vw.sensor_wcs(camera.get_sensor("R22_S11"))
    t0 = time.perf_counter()
    sip.radecToxy(ra, dec, units="deg")
    t_sip = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def ms(values):
        return f"median {1e3 * statistics.median(values):.1f} ms (min {1e3 * min(values):.1f}, max {1e3 * max(values):.1f})"

    print(f"imports (astropy, batoid, erfa, galsim, dc2flow): {t_imports:.2f} s")
    print(f"first VisitWcs (optics, ERFA, boresight):          {t_visit:.3f} s")
    print(f"per sensor, ray trace + ERFA of 97 field angles:   {ms(trace)}")
    print(f"per sensor, TAN-SIP fit (galsim.FittedSIPWCS):     {ms(fit)}")
    print(f"per visit, {len(sensors)} sensors' WCS:                   {t_all:.2f} s "
          f"({t_all / len(sensors) * 1e3:.0f} ms per sensor)")
    print(f"exact chain ICRF -> focal plane, {args.objects} objects:  {t_chain * 1e3:.0f} ms")
    print(f"fitted TAN-SIP radecToxy, {args.objects} objects:        {t_sip * 1e3:.0f} ms")
    print(f"peak RSS: {peak_mb:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
