"""Synthetic DC2-format instance catalogs for any pointing, band, density and seed.

The real DC2 Run2.2i catalogs cover a few hundred square degrees near RA 60, Dec -37.  Tests,
benchmarks and new campaigns need catalogs anywhere else (the poles, RA = 0/360, any band) and of
any size, so :func:`make_catalog` writes one laid out exactly as DC2's: a main file
``phosim_cat_{visit}.txt`` with the phosim header and ``includeobj`` lines, and four gzipped
sub-catalogs beside it::

    star_cat_{visit}.txt.gz        stars (``point``)
    bulge_gal_cat_{visit}.txt.gz   galaxy bulges (``sersic2d``, n = 4)
    disk_gal_cat_{visit}.txt.gz    galaxy disks (``sersic2d``, n = 1)
    knots_cat_{visit}.txt.gz       star-forming knots (``knots``, same a, b, pa as the disk)

Each object line is what imSim and phosim read::

    object ID RA DEC MAGNORM SED REDSHIFT GAMMA1 GAMMA2 KAPPA DRA DDEC TYPE [params] DUST_INT DUST_GAL

IDs follow DC2: star ``i`` is ``i * 1024 + 4``; galaxy ``g`` (counted from 1) has components
``g * 1024 + 97`` (bulge), ``+ 107`` (disk) and ``+ 117`` (knots).  Extra ``bright_stars`` are
numbered from :data:`BRIGHT_STAR_ID_START`.

The population is realistic-ish, not a model of the sky: positions are uniform in solid angle on a
cap around the boresight; star ``magnorm`` follows dN/dm ~ 10^(0.3 m) between ``star_mag_min`` and
27, galaxy ``magnorm`` (bulge + disk + knots) dN/dm ~ 10^(0.35 m) between 20 and 28; disk
half-light radii are lognormal about 0.5 arcsec at magnorm 24, shrinking for fainter galaxies;
Milky-Way dust is a cosecant law in Galactic latitude (``A_V = 3.1 * 0.015 / sin|b|``, at most
3.1), not a dust map.  SED names are real entries of DESC's SED library (:data:`STAR_SEDS`,
:data:`GALAXY_SEDS`).

The observing conditions are self-consistent at Rubin's site, as the WCS needs them
(:mod:`dc2flow.wcs` computes refraction and the camera's orientation from the time): ``mjd`` is the
first time at or after the ``mjd`` argument when the rising field (east of the meridian) stands at
``altitude_deg`` (by default its highest, on the meridian), ``azimuth`` follows, and
``rottelpos = rotskypos + q`` (the parallactic angle then, :func:`dc2flow.wcs.rotation_angles`).  A field that never
climbs that high at Rubin is refused.  The Moon is new and below the horizon, the Sun at -30 degrees.

The same arguments always give byte-identical files (gzip members carry no name and mtime 0), and
every file is written under a temporary name and renamed into place, the main file last: its
existence marks a complete catalog.
"""

from __future__ import annotations

import gzip
import math
import os
import tempfile
from typing import Iterable, Sequence

import numpy as np

from .errors import ConfigError

__all__ = [
    "BANDS",
    "STAR_SEDS",
    "GALAXY_SEDS",
    "BRIGHT_STAR_ID_START",
    "BRIGHT_STAR_SED",
    "DEFAULT_STAR_DENSITY",
    "DEFAULT_GALAXY_DENSITY",
    "cap_area_deg2",
    "sample_cap",
    "make_catalog",
]

BANDS = "ugrizy"

# Relative paths in DESC's SED library (all present in the shared test slice of it).
STAR_SEDS = (
    "starSED/kurucz/km10_5750.fits_g10_5750.gz",
    "starSED/kurucz/km20_6000.fits_g15_6000.gz",
    "starSED/kurucz/km35_6500.fits_g40_6600.gz",
    "starSED/kurucz/km15_5250.fits_g05_5270.gz",
    "starSED/kurucz/km20_4500.fits_g00_4600.gz",
    "starSED/kurucz/km50_4000.fits_g05_4160.gz",
    "starSED/phoSimMLT/lte035-4.5-1.0a+0.4.BT-Settl.spec.gz",
    "starSED/phoSimMLT/lte033-4.5-1.0a+0.4.BT-Settl.spec.gz",
    "starSED/phoSimMLT/lte027-2.0-0.0a+0.0.BT-Settl.spec.gz",
)
BRIGHT_STAR_SED = "starSED/kurucz/km35_6500.fits_g40_6600.gz"
GALAXY_SEDS = (
    "galaxySED/Burst.25E09.02Z.spec.gz",
    "galaxySED/Burst.40E09.04Z.spec.gz",
    "galaxySED/Const.12E10.04Z.spec.gz",
    "galaxySED/Exp.20E09.02Z.spec.gz",
    "galaxySED/Exp.40E09.02Z.spec.gz",
    "galaxySED/Exp.62E09.04Z.spec.gz",
    "galaxySED/Inst.10E09.02Z.spec.gz",
    "galaxySED/Inst.25E09.04Z.spec.gz",
    "galaxySED/Inst.80E08.02Z.spec.gz",
)

DEFAULT_STAR_DENSITY = 500.0      # per deg^2: ~98 in a 0.25 deg cap, ~4800 in the 1.75 deg field
DEFAULT_GALAXY_DENSITY = 1000.0   # per deg^2: ~196 in a 0.25 deg cap, ~9600 in the 1.75 deg field
BRIGHT_STAR_ID_START = 10**15     # far above any generated star id (i * 1024 + 4)
STAR_ID_SUFFIX = 4
BULGE_ID_SUFFIX, DISK_ID_SUFFIX, KNOTS_ID_SUFFIX = 97, 107, 117
STAR_MAG_MAX = 27.0
STAR_COUNT_SLOPE = 0.3            # dN/dm ~ 10^(slope m)
GALAXY_MAG_RANGE = (20.0, 28.0)
GALAXY_COUNT_SLOPE = 0.35
MAX_RADIUS_DEG = 5.0
MAX_KNOTS = 50
MW_RV = 3.1
_MAIN_HEADER_DIGITS = 12          # pointing keys; the rest get 7 decimals, as DC2's do

# Third row of the ICRS -> Galactic rotation: the unit vector of the north Galactic pole.
_GALACTIC_POLE = np.array([-0.8676661490190047, -0.1980763734312015, 0.4559837761750669])


def cap_area_deg2(radius_deg: float) -> float:
    """Solid angle of a spherical cap of angular radius ``radius_deg``, in square degrees."""
    return 2.0 * math.pi * (1.0 - math.cos(math.radians(radius_deg))) * (180.0 / math.pi) ** 2


def sample_cap(
    rng: np.random.Generator, n: int, ra_deg: float, dec_deg: float, radius_deg: float
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``n`` positions uniform in solid angle on a cap around (``ra_deg``, ``dec_deg``).

    The angular distance ``theta`` from the centre has cos(theta) uniform in [cos(radius), 1] and
    the bearing is uniform in [0, 360); each point is then the exact spherical destination of that
    offset, so the result is correct at any declination, including the poles, and across RA 0/360.

    Parameters:
        rng:         the random generator to draw from.
        n:           number of positions (>= 0).
        ra_deg:      RA of the centre, degrees.
        dec_deg:     Dec of the centre, degrees in [-90, 90].
        radius_deg:  angular radius of the cap, degrees in (0, 180].

    Returns:
        (ra, dec): float arrays in degrees, RA in [0, 360), Dec in [-90, 90].

    Raises:
        ConfigError: ``n`` negative, or the centre or radius out of range.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ConfigError("n", n, "number of positions must be an integer >= 0", ">= 0")
    _check_range("dec_deg", dec_deg, -90.0, 90.0)
    _check_range("ra_deg", ra_deg, -math.inf, math.inf)
    if not (0.0 < _finite("radius_deg", radius_deg) <= 180.0):
        raise ConfigError("radius_deg", radius_deg, "cap radius out of range", "(0, 180] degrees")
    cos_r = math.cos(math.radians(radius_deg))
    cos_t = 1.0 - rng.random(n) * (1.0 - cos_r)          # uniform in (cos_r, 1]
    sin_t = np.sqrt(np.clip(1.0 - cos_t**2, 0.0, None))
    bearing = rng.random(n) * 2.0 * math.pi
    ra0, dec0 = math.radians(ra_deg), math.radians(dec_deg)
    sin_dec = np.clip(math.sin(dec0) * cos_t + math.cos(dec0) * sin_t * np.cos(bearing), -1.0, 1.0)
    dra = np.arctan2(np.sin(bearing) * sin_t * math.cos(dec0), cos_t - math.sin(dec0) * sin_dec)
    ra = np.degrees(ra0 + dra) % 360.0
    ra[ra >= 360.0] = 0.0                                 # -tiny % 360 can round to 360.0
    return ra, np.degrees(np.arcsin(sin_dec))


def make_catalog(
    *,
    outdir: str | os.PathLike,
    visit: int,
    ra_deg: float,
    dec_deg: float,
    band: str,
    seed: int,
    mjd: float = 60000.0,
    rotskypos_deg: float = 0.0,
    altitude_deg: float | None = None,
    seeing_arcsec: float = 0.7,
    exptime_s: float = 30.0,
    radius_deg: float = 1.75,
    star_density: float = DEFAULT_STAR_DENSITY,
    galaxy_density: float = DEFAULT_GALAXY_DENSITY,
    star_mag_min: float = 16.0,
    bright_stars: Iterable[Sequence[float]] = (),
) -> str:
    """Write a synthetic DC2-format instance catalog and return the path of its main file.

    The numbers of stars and galaxies are Poisson draws with mean density x cap area
    (:func:`cap_area_deg2`); with the default densities a 0.25 degree cap holds ~98 stars and
    ~196 galaxies, the full 1.75 degree LSSTCam field ~4800 stars and ~9600 galaxies (3 lines each).
    Everything is drawn from ``numpy.random.default_rng(seed)``: the same arguments give
    byte-identical files.

    Parameters:
        outdir:          folder to write into; created if missing.
        visit:           the ``obshistid`` (integer >= 0); names the files.
        ra_deg:          boresight RA, degrees (wrapped into [0, 360)).
        dec_deg:         boresight Dec, degrees in [-90, 90].
        band:            one of ``u g r i z y``; written as ``filter`` 0-5.
        seed:            random seed (integer >= 0); also the header's ``seed``.
        mjd:             the earliest MJD of the exposure's middle; the catalog's ``mjd`` is the first
                         time from then when the field is at ``altitude_deg``. [default: 60000.0]
        rotskypos_deg:   sky rotation angle, degrees. [default: 0.0]
        altitude_deg:    boresight altitude, degrees in (0, 90], reached by the rising field.
                         [default: None, the field on the meridian (its highest)]
        seeing_arcsec:   FWHM seeing, arcsec (> 0). [default: 0.7]
        exptime_s:       exposure time (``vistime``), seconds (> 0). [default: 30.0]
        radius_deg:      radius of the cap objects are placed in, degrees in (0, 5].
                         [default: 1.75, the LSSTCam field]
        star_density:    stars per square degree (>= 0). [default: 500.0]
        galaxy_density:  galaxies per square degree (>= 0). [default: 1000.0]
        star_mag_min:    brightest star ``magnorm``, in [5, 27). [default: 16.0]
        bright_stars:    extra point sources ``(ra_deg, dec_deg, magnorm)`` appended to the star
                         catalog, ids from :data:`BRIGHT_STAR_ID_START`, SED
                         :data:`BRIGHT_STAR_SED`; they need not lie in the cap. [default: ()]

    Returns:
        The path of ``{outdir}/phosim_cat_{visit}.txt``.

    Raises:
        ConfigError: an argument is out of range; the message names the argument.
    """
    visit = _check_int("visit", visit)
    seed = _check_int("seed", seed)
    if band not in tuple(BANDS):
        raise ConfigError("band", band, "unknown band", ", ".join(BANDS))
    ra_deg = _finite("ra_deg", ra_deg) % 360.0
    _check_range("dec_deg", dec_deg, -90.0, 90.0)
    _finite("mjd", mjd)
    rotskypos_deg = _finite("rotskypos_deg", rotskypos_deg) % 360.0
    if altitude_deg is None:
        from .wcs import SITES

        altitude_deg = 90.0 - abs(float(dec_deg) - SITES["obs_lsst"][1])
    if not (0.0 < _finite("altitude_deg", altitude_deg) <= 90.0):
        raise ConfigError("altitude_deg", altitude_deg, "altitude out of range", "(0, 90] degrees")
    for key, value in (("seeing_arcsec", seeing_arcsec), ("exptime_s", exptime_s)):
        if not _finite(key, value) > 0.0:
            raise ConfigError(key, value, "must be positive", "> 0")
    if not (0.0 < _finite("radius_deg", radius_deg) <= MAX_RADIUS_DEG):
        raise ConfigError("radius_deg", radius_deg, "cap radius out of range",
                          f"(0, {MAX_RADIUS_DEG:g}] degrees")
    for key, value in (("star_density", star_density), ("galaxy_density", galaxy_density)):
        if not _finite(key, value) >= 0.0:
            raise ConfigError(key, value, "density must not be negative", ">= 0 per square degree")
    if not (5.0 <= _finite("star_mag_min", star_mag_min) < STAR_MAG_MAX):
        raise ConfigError("star_mag_min", star_mag_min, "brightest star magnorm out of range",
                          f"[5, {STAR_MAG_MAX:g})")
    bright = _check_bright_stars(bright_stars)

    rng = np.random.default_rng(seed)
    area = cap_area_deg2(radius_deg)
    n_star = int(rng.poisson(star_density * area))
    n_gal = int(rng.poisson(galaxy_density * area))
    star_lines = _star_lines(rng, n_star, ra_deg, dec_deg, radius_deg, star_mag_min) + _bright_lines(bright)
    bulge_lines, disk_lines, knots_lines = _galaxy_lines(rng, n_gal, ra_deg, dec_deg, radius_deg)

    outdir = os.fspath(outdir)
    os.makedirs(outdir, exist_ok=True)
    subs = {
        f"star_cat_{visit}.txt.gz": star_lines,
        f"bulge_gal_cat_{visit}.txt.gz": bulge_lines,
        f"disk_gal_cat_{visit}.txt.gz": disk_lines,
        f"knots_cat_{visit}.txt.gz": knots_lines,
    }
    header = _header_lines(
        visit=visit, ra_deg=ra_deg, dec_deg=float(dec_deg), band=band, seed=seed, mjd=float(mjd),
        rotskypos_deg=rotskypos_deg, altitude_deg=float(altitude_deg),
        seeing_arcsec=float(seeing_arcsec), exptime_s=float(exptime_s),
    )
    main_name = f"phosim_cat_{visit}.txt"
    main_lines = header + [f"includeobj {name}" for name in subs]

    temps: list[tuple[str, str]] = []
    try:
        for name, lines in subs.items():
            temps.append((_write_temp(outdir, name, lines, gzipped=True), name))
        temps.append((_write_temp(outdir, main_name, main_lines, gzipped=False), main_name))
        for tmp, name in temps:  # the main file is last
            os.replace(tmp, os.path.join(outdir, name))
    except BaseException:
        for tmp, _ in temps:
            if os.path.exists(tmp):
                os.remove(tmp)
        raise
    return os.path.join(outdir, main_name)


# ---------------------------------------------------------------------------------------------
# Populations


def _power_law_mags(rng: np.random.Generator, n: int, m_min: float, m_max: float,
                    slope: float) -> np.ndarray:
    """Magnitudes with dN/dm ~ 10^(slope m) on [m_min, m_max], by inverting the CDF."""
    lo, hi = 10.0 ** (slope * m_min), 10.0 ** (slope * m_max)
    return np.log10(lo + rng.random(n) * (hi - lo)) / slope


def _mw_av(ra_deg: np.ndarray, dec_deg: np.ndarray) -> np.ndarray:
    """Milky-Way A_V from a cosecant law in Galactic latitude, capped at 3.1 mag."""
    ra, dec = np.radians(ra_deg), np.radians(dec_deg)
    xyz = np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)], axis=-1)
    sin_b = np.abs(xyz @ _GALACTIC_POLE)
    ebv = np.minimum(0.015 / np.maximum(sin_b, 1e-6), 1.0)
    return MW_RV * ebv


def _star_lines(rng: np.random.Generator, n: int, ra0: float, dec0: float, radius: float,
                mag_min: float) -> list[str]:
    ra, dec = sample_cap(rng, n, ra0, dec0, radius)
    mag = _power_law_mags(rng, n, mag_min, STAR_MAG_MAX, STAR_COUNT_SLOPE)
    sed = rng.integers(0, len(STAR_SEDS), n)
    av = _mw_av(ra, dec)
    ids = np.arange(n, dtype=np.int64) * 1024 + STAR_ID_SUFFIX
    return [
        f"object {i} {_fmt_ra(r)} {d:.10f} {m:.7f} {STAR_SEDS[s]} 0 0 0 0 0 0 point none "
        f"CCM {a:.7f} {MW_RV}"
        for i, r, d, m, s, a in zip(ids.tolist(), ra.tolist(), dec.tolist(), mag.tolist(),
                                    sed.tolist(), av.tolist())
    ]


def _bright_lines(bright: list[tuple[float, float, float]]) -> list[str]:
    lines = []
    for k, (ra, dec, mag) in enumerate(bright):
        av = float(_mw_av(np.array([ra]), np.array([dec]))[0])
        lines.append(
            f"object {BRIGHT_STAR_ID_START + k} {_fmt_ra(ra)} {dec:.10f} {mag:.7f} "
            f"{BRIGHT_STAR_SED} 0 0 0 0 0 0 point none CCM {av:.7f} {MW_RV}"
        )
    return lines


def _galaxy_lines(rng: np.random.Generator, n: int, ra0: float, dec0: float,
                  radius: float) -> tuple[list[str], list[str], list[str]]:
    """Bulge, disk and knots lines of ``n`` galaxies (component magnorms share the total flux)."""
    ra, dec = sample_cap(rng, n, ra0, dec0, radius)
    mag = _power_law_mags(rng, n, *GALAXY_MAG_RANGE, GALAXY_COUNT_SLOPE)
    z = np.clip(rng.gamma(3.0, 0.25, n), 0.02, 3.0)
    g1, g2 = np.clip(rng.normal(0.0, 0.01, (2, n)), -0.035, 0.035)   # |gamma| < 0.05
    kappa = np.clip(rng.normal(0.0, 0.01, n), -0.045, 0.045)
    mw_av = _mw_av(ra, dec)
    bulge_fraction = rng.uniform(0.05, 0.7, n)                        # of the total flux
    knots_fraction = rng.uniform(0.1, 0.5, n)                         # of the disk's flux
    bulge_mag = mag - 2.5 * np.log10(bulge_fraction)
    disk_mag = mag - 2.5 * np.log10((1.0 - bulge_fraction) * (1.0 - knots_fraction))
    knots_mag = mag - 2.5 * np.log10((1.0 - bulge_fraction) * knots_fraction)
    disk_a = np.clip(0.5 * 10.0 ** (-0.08 * (mag - 24.0)) * rng.lognormal(0.0, 0.35, n), 0.05, 5.0)
    disk_b = disk_a * rng.uniform(0.2, 1.0, n)
    bulge_a = disk_a * rng.uniform(0.2, 0.6, n)
    bulge_b = bulge_a * rng.uniform(0.5, 1.0, n)
    pa = rng.uniform(0.0, 180.0, n)
    pa[pa >= 180.0 - 1e-7] = 0.0                                      # %.7f must not print 180
    bulge_av, disk_av = rng.uniform(0.0, 0.5, (2, n))
    bulge_sed, disk_sed = rng.integers(0, len(GALAXY_SEDS), (2, n))
    npoints = rng.integers(1, MAX_KNOTS + 1, n)
    base_id = (np.arange(n, dtype=np.int64) + 1) * 1024

    bulge, disk, knots = [], [], []
    for k in range(n):
        common = (f"{_fmt_ra(ra[k])} {dec[k]:.10f}", f"{z[k]:.7f} {g1[k]:.8f} {g2[k]:.8f} "
                  f"{kappa[k]:.8f} 0 0")
        mw = f"CCM {mw_av[k]:.7f} {MW_RV}"
        bid = int(base_id[k])
        bulge.append(
            f"object {bid + BULGE_ID_SUFFIX} {common[0]} {bulge_mag[k]:.7f} "
            f"{GALAXY_SEDS[bulge_sed[k]]} {common[1]} sersic2d {bulge_a[k]:.7f} {bulge_b[k]:.7f} "
            f"{pa[k]:.7f} 4 CCM {bulge_av[k]:.7f} {MW_RV} {mw}"
        )
        shape = f"{disk_a[k]:.7f} {disk_b[k]:.7f} {pa[k]:.7f}"
        disk_tail = f"CCM {disk_av[k]:.7f} {MW_RV} {mw}"
        disk.append(
            f"object {bid + DISK_ID_SUFFIX} {common[0]} {disk_mag[k]:.7f} "
            f"{GALAXY_SEDS[disk_sed[k]]} {common[1]} sersic2d {shape} 1 {disk_tail}"
        )
        knots.append(
            f"object {bid + KNOTS_ID_SUFFIX} {common[0]} {knots_mag[k]:.7f} "
            f"{GALAXY_SEDS[disk_sed[k]]} {common[1]} knots {shape} {npoints[k]} {disk_tail}"
        )
    return bulge, disk, knots


# ---------------------------------------------------------------------------------------------
# Header and files


def observing_time(ra_deg: float, dec_deg: float, altitude_deg: float, mjd: float) -> tuple[float, float]:
    """(mjd, azimuth_deg): the first time at or after ``mjd`` when the rising field stands at
    ``altitude_deg`` (geometric) at Rubin's site, and its azimuth (N through E) then.

    Raises:
        ConfigError: the field never reaches that altitude there.
    """
    import erfa

    from .wcs import SITES, Site, WcsSettings

    lon, lat, _ = SITES["obs_lsst"]
    phi, dec, alt = math.radians(lat), math.radians(dec_deg), math.radians(altitude_deg)
    cos_h = (math.sin(alt) - math.sin(phi) * math.sin(dec)) / (math.cos(phi) * math.cos(dec))
    if abs(cos_h) - 1.0 < 1e-9:
        cos_h = max(-1.0, min(1.0, cos_h))          # the meridian, to rounding
    else:
        top = 90.0 - abs(dec_deg - lat)
        raise ConfigError("altitude_deg", altitude_deg, f"a field at dec {dec_deg:g} never stands this high at Rubin",
                          f"(0, {top:.4f}] degrees")
    hour = -math.acos(cos_h)                                     # east of the meridian: rising
    def lst(t):
        return erfa.gmst06(2400000.5, t, 2400000.5, t) + math.radians(lon)

    target, sidereal = math.radians(ra_deg) + hour, 2 * math.pi * 1.0027379093   # radians of LST per day
    t = float(mjd) + ((target - lst(float(mjd))) % (2 * math.pi)) / sidereal    # the first time from mjd
    for _ in range(2):
        t += ((target - lst(t) + math.pi) % (2 * math.pi) - math.pi) / sidereal
    # then the apparent hour angle (precession, nutation, aberration; no refraction) by ERFA
    geometric = WcsSettings(pressure_kpa=0.0)
    for _ in range(3):
        _, _, hob, _, _ = Site(t, 500.0, geometric).icrf_to_observed(math.radians(ra_deg), dec)
        t += ((hour - float(hob) + math.pi) % (2 * math.pi) - math.pi) / sidereal
    az = math.atan2(-math.cos(dec) * math.sin(hour),
                    math.sin(dec) * math.cos(phi) - math.cos(dec) * math.cos(hour) * math.sin(phi))
    return t, math.degrees(az) % 360.0


def _header_lines(*, visit: int, ra_deg: float, dec_deg: float, band: str, seed: int, mjd: float,
                  rotskypos_deg: float, altitude_deg: float, seeing_arcsec: float,
                  exptime_s: float) -> list[str]:
    """The phosim header, in DC2's key order, with the conditions of the module doc."""
    from .wcs import rotation_angles

    mjd, azimuth = observing_time(ra_deg, dec_deg, altitude_deg, mjd)
    _, rottelpos = rotation_angles(ra_deg, dec_deg, mjd, band, rotskypos_deg, None)
    p = _MAIN_HEADER_DIGITS
    values = [
        ("rightascension", f"{ra_deg:.{p}f}"),
        ("declination", f"{dec_deg:.{p}f}"),
        ("mjd", f"{mjd:.{p}f}"),
        ("altitude", f"{altitude_deg:.{p}f}"),
        ("azimuth", f"{azimuth:.{p}f}"),
        ("filter", str(BANDS.index(band))),
        ("rotskypos", f"{rotskypos_deg:.{p}f}"),
        ("rottelpos", f"{rottelpos:.{p}f}"),
        ("dist2moon", f"{90.0:.7f}"),
        ("moonalt", f"{-30.0:.7f}"),
        ("moondec", f"{0.0:.7f}"),
        ("moonphase", f"{0.0:.7f}"),
        ("moonra", f"{(ra_deg + 180.0) % 360.0:.7f}"),
        ("nsnap", "1"),
        ("seqnum", "0"),
        ("obshistid", str(visit)),
        ("seed", str(seed)),
        ("seeing", f"{seeing_arcsec:.7f}"),
        ("sunalt", f"{-30.0:.7f}"),
        ("vistime", f"{exptime_s:.7f}"),
    ]
    return [f"{key} {value}" for key, value in values]


def _write_temp(outdir: str, name: str, lines: list[str], *, gzipped: bool) -> str:
    """Write ``lines`` to a new temporary file in ``outdir``; return its path."""
    fd, tmp = tempfile.mkstemp(dir=outdir, prefix=f".{name}.", suffix=".tmp")
    data = "".join(line + "\n" for line in lines).encode("ascii")
    try:
        with os.fdopen(fd, "wb") as raw:
            if gzipped:
                # No file name and mtime 0 in the gzip header: identical input, identical bytes.
                with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
                    gz.write(data)
            else:
                raw.write(data)
    except BaseException:
        os.remove(tmp)
        raise
    return tmp


# ---------------------------------------------------------------------------------------------
# Argument checks


def _fmt_ra(ra: float) -> str:
    """RA with 10 decimals, never printed as 360.0000000000."""
    return f"{0.0 if ra >= 360.0 - 1e-10 else ra:.10f}"


def _finite(key: str, value) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ConfigError(key, value, "not a number", "a finite number") from None
    if isinstance(value, bool) or not math.isfinite(x):
        raise ConfigError(key, value, "not a finite number", "a finite number")
    return x


def _check_range(key: str, value, lo: float, hi: float) -> float:
    x = _finite(key, value)
    if not lo <= x <= hi:
        raise ConfigError(key, value, "out of range", f"[{lo:g}, {hi:g}]")
    return x


def _check_int(key: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ConfigError(key, value, "must be an integer >= 0", ">= 0")
    return int(value)


def _check_bright_stars(bright_stars) -> list[tuple[float, float, float]]:
    out = []
    for k, star in enumerate(bright_stars):
        key = f"bright_stars[{k}]"
        try:
            ra, dec, mag = star
        except (TypeError, ValueError):
            raise ConfigError(key, star, "not an (ra_deg, dec_deg, magnorm) triple",
                              "(ra_deg, dec_deg, magnorm)") from None
        ra = _finite(key, ra) % 360.0
        dec = _check_range(key, dec, -90.0, 90.0)
        mag = _finite(key, mag)
        if not mag < 50.0:
            raise ConfigError(key, star, "magnorm >= 50 is skipped by imSim", "magnorm < 50")
        out.append((ra, dec, mag))
    return out
