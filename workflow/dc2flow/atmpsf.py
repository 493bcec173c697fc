"""The atmospheric PSF (``scene.psf_model: atmospheric``): GalSim phase screens, as imSim's.

imSim's ``imsim/atmPSF.py`` conventions, reproduced here in dc2flow's own code:

- **six layers** at altitudes 0.2 (the ground layer raised from 0 so that PSFs are not too
  correlated over the field), 2.58, 5.16, 7.73, 12.89 and 15.46 km, with Ellerbroek (2008)'s
  turbulence weights 0.652, 0.172, 0.055, 0.025, 0.074, 0.022, each perturbed by 10 % (Gaussian),
  clipped to [0.01, 0.8] and renormalised;
- **outer scale** ``L0`` (shared by the layers) drawn from a log-normal of median 25 m and sigma
  0.6 in ln, truncated to [10, 100] m;
- **r0_500** solved (bisection) so that the von Karman FWHM at the band's effective wavelength
  (Tokovinin 2002 eq. 19: the Kolmogorov FWHM times ``sqrt(1 - 2.183 (r0/L0)**0.356)``) equals
  imSim's target ``raw_seeing * X**0.6 * (lambda_eff / 500 nm)**-0.3`` (the same atmosphere FWHM
  as the parametric model, :func:`dc2flow.psf.atmosphere_fwhm`);
- **wind** speeds uniform in [0, 20] m/s and directions uniform in [0, 360) deg, per layer;
- screens of ``screen_size`` x ``screen_size`` m sampled every ``screen_scale`` m, instantiated
  with ``kmax = kcrit / r0`` (``kcrit`` 0.2) for photon shooting; the turbulence above ``kmax``
  and the diffraction of the 8.36 m pupil (obscuration 0.61) are GalSim's ``SecondKick`` (the
  "second kick"), built once per visit;
- the PSF at field angle ``theta``: ``Atmosphere.makePSF(lambda_eff, theta, t0=0, exptime)``
  without its own second kick, made chromatic by ``ChromaticAtmosphere`` (dilation
  ``(lambda / lambda_eff)**-0.3``, no DCR), convolved with the second kick and a Gaussian.

The Gaussian is where dc2flow departs from imSim: imSim adds a fixed 0.3" Gaussian because its
optics are ray-traced photon by photon (batoid) and its sensor is GalSim's silicon model; dc2flow
has neither, so the Gaussian (optics + sensor, as in the parametric model) is *solved* per visit
so that the true FWHM of the expected long-exposure PSF (von Karman x Airy x Gaussian, imSim's own
FFT stand-in for the phase-screen PSF, :meth:`AtmosphericPsf.fft_psf`) equals the visit's
FWHMgeom.  Measured on drawn stars (tests/test_atmpsf.py and benchmarks/atm_psf.py), a 30 s
phase-screen PSF comes out ~1-2 % narrower than that expectation (incomplete averaging of image
wander within the exposure).

Chromaticity: :meth:`AtmosphericPsf.chromatic` is imSim's chromatic PSF; dc2flow's render draws
achromatic (flux-in-band) objects, so it evaluates the PSF at the band's effective wavelength
(:meth:`AtmosphericPsf.psf` with ``wavelength_nm`` None), the same for every object.

Drawing: phase-screen PSFs can only be photon-shot (GalSim's geometric approximation of the first
kick needs ``method='phot'``).  Objects that the render draws by FFT (brighter than
``render.fft_flux_threshold``) get imSim's FFT stand-in instead (``imsim.psf_utils.make_fft_psf``:
the phase-screen PSF replaced by a von Karman of the same ``r0_500`` and ``L0``, the second kick by
its Airy part), convolved with the same Gaussian: the same size, but round and the same over the
field.

Screens: imSim's realistic setting is 819.2 m at 0.1 m (8192^2 per layer: 3.1 GB for the six
screens; not measured here, ~4x the next figures: ~6.5 GB peak, ~1.5 min); ``screen_scale`` of ~r0
(0.2 m) loses nothing the first kick needs (its modes are longer than ``2 pi / kmax`` ~ 5 m):
819.2 m at 0.2 m measured 769 MB of screens, 1.67 GB peak RSS, 18-22 s to build on this machine.
Tests use 204.8 m at 0.2 m (48 MB of screens, 236 MB peak RSS with GalSim, ~3 s;
benchmarks/atm_psf.py).

Sharing: a visit's screens are built once, by the workflow's per-visit ``build_screens`` job
(:func:`build_screens`, ``dc2flow screens``), and written as plain ``.npy`` arrays with a JSON record
(:func:`write_screens`); every render of the visit memory-maps them read-only
(:func:`load_screens`, ``dc2flow render --screens``): GalSim's ``LookupTable2D`` of each layer
points into the mapping, nothing is copied, so the renders of a bundle, separate processes side by
side on one node, share one copy in the page cache, and the pixels are the same as with screens
built in process (tests/test_atmpsf.py).  The estimate charges each render only
:attr:`AtmosphereSettings.render_private_gb` and the bundler the screens
(:attr:`AtmosphereSettings.shared_memory_gb`) once per visit in a bundle.  Measured
(benchmarks/atm_share.py, 3 processes, 30 stars each over the field): 819.2 m at 0.2 m, PSS summed
over the 3 processes 1.09 GB mapped vs 2.98 GB building their own, each mapping's private heap the
same 0.13 GB above a parametric render's; 30 stars already touch 57 % of the screens' pages (the
pupil sweeps up to 600 m of each layer in 30 s), so the whole file is counted.  Within a process,
:func:`for_visit` keeps the atmosphere (a small cache keyed by the visit, the settings and the
screens file); without a screens file it is built in process, as before.
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import RenderError
from .io import atomic_output, derive_seed
from .psf import LSE40_WAVELENGTH_NM, airmass_ks

ALTITUDES_KM = (0.2, 2.58, 5.16, 7.73, 12.89, 15.46)          # Ellerbroek 2008, ground layer at 0.2 km
WEIGHTS = (0.652, 0.172, 0.055, 0.025, 0.074, 0.022)           # Ellerbroek 2008
MAX_WIND_M_S = 20.0
PUPIL_DIAMETER_M = 8.36
PUPIL_OBSCURATION = 0.61
N_LAYERS_FOR_MEMORY = 6
IMSIM_SCREEN_SIZE_M = 819.2
IMSIM_SCREEN_SCALE_M = 0.1
RENDER_PRIVATE_GB = 0.15
"""A render's own memory for the atmospheric PSF when the screens are mapped, GB (see
:attr:`AtmosphereSettings.render_private_gb`)."""


@dataclass(frozen=True)
class AtmosphereSettings:
    """How the phase screens are built (config ``scene.atmosphere``).

    Parameters:
        screen_size_m:  side of each layer's periodic screen, metres. [default: 819.2, imSim's]
        screen_scale_m: the screens' sampling, metres. [default: 0.1, imSim's]
        kcrit:          first/second-kick split, in units of 1/r0. [default: 0.2]
        exponent:       chromatic dilation exponent of the first kick. [default: -0.3]
    """

    screen_size_m: float = IMSIM_SCREEN_SIZE_M
    screen_scale_m: float = IMSIM_SCREEN_SCALE_M
    kcrit: float = 0.2
    exponent: float = -0.3

    @classmethod
    def from_scene(cls, scene: dict) -> "AtmosphereSettings":
        given = scene.get("atmosphere") or {}
        return cls(**{k: float(v) for k, v in given.items()})

    @property
    def screen_pixels(self) -> int:
        return int(round(self.screen_size_m / self.screen_scale_m))

    @property
    def expected_screen_gb(self) -> float:
        """The six layers' screens: ``6 * (size / scale)^2`` float64 values."""
        return N_LAYERS_FOR_MEMORY * self.screen_pixels**2 * 8 / 1e9

    @property
    def screen_npix(self) -> int:
        """GalSim's screen side in samples: ``good_fft_size(ceil(size / scale))``."""
        import galsim

        return galsim.Image.good_fft_size(int(math.ceil(self.screen_size_m / self.screen_scale_m)))

    @property
    def shared_memory_gb(self) -> float:
        """The screens as :func:`write_screens` stores them and every render of the visit maps: six
        layers of ``(npix + 1)^2`` float64 (GalSim's wrapped table) and their x, y axes, GB.  Mapped
        read-only, they are page cache that the renders of a bundle share: the bundler counts them
        once per visit in a bundle (``visit_shared_gb`` of the estimates), not once per sensor."""
        n = self.screen_npix + 1
        return N_LAYERS_FOR_MEMORY * (n * n + 2 * n) * 8 / 1e9

    @property
    def build_memory_gb(self) -> float:
        """Peak memory of building the screens in one process (the ``build_screens`` job, or a render
        without ``--screens``): ``0.06 GB + 2.0 x`` the screens (a fit of benchmarks/atm_psf.py's
        peaks: 204.8 m at 0.2 m, 48 MB of screens, +0.15 GB; 819.2 m at 0.2 m, 769 MB, +1.59 GB)."""
        return 0.06 + 2.0 * self.expected_screen_gb

    @property
    def render_private_gb(self) -> float:
        """What a render that maps the screens holds privately for the atmosphere, beyond the
        parametric PSF's render: :data:`RENDER_PRIVATE_GB` (its PSF objects, aperture, second-kick
        tables; measured by benchmarks/atm_share.py, independent of the screen size)."""
        return RENDER_PRIVATE_GB


def vk_fwhm_arcsec(r0_500_m: float, wavelength_nm: float, L0_m: float) -> float:
    """Von Karman FWHM (arcsec): Tokovinin (2002) eq. 19 on the Kolmogorov FWHM."""
    import galsim

    kolmogorov = galsim.Kolmogorov(r0_500=r0_500_m, lam=wavelength_nm).fwhm
    r0 = r0_500_m * (wavelength_nm / 500.0) ** 1.2
    arg = 1.0 - 2.183 * (r0 / L0_m) ** 0.356
    return kolmogorov * math.sqrt(arg) if arg > 0 else 0.0


def r0_500_for(target_fwhm_arcsec: float, wavelength_nm: float, L0_m: float) -> float:
    """The r0 at 500 nm (m) whose von Karman FWHM at ``wavelength_nm`` is ``target_fwhm_arcsec``."""
    from scipy.optimize import bisect

    r0_max = min(1.0, L0_m * (1.0 / 2.183) ** (-0.356) * (wavelength_nm / 500.0) ** 1.2)
    return float(bisect(lambda r: vk_fwhm_arcsec(r, wavelength_nm, L0_m) - target_fwhm_arcsec, 0.01, r0_max))


def draw_layers(rng, target_fwhm_arcsec: float, wavelength_nm: float) -> dict:
    """imSim's random atmosphere: weights, outer scale, r0_500, wind speeds and directions.

    The draws are made in imSim's order from one GalSim deviate stream (``rng``).
    """
    import galsim

    ud, gd = galsim.UniformDeviate(rng), galsim.GaussianDeviate(rng)
    weights = np.clip([abs(w * (1.0 + 0.1 * gd())) for w in WEIGHTS], 0.01, 0.8)
    weights = weights / weights.sum()
    L0 = 0.0
    while L0 < 10.0 or L0 > 100.0:
        L0 = math.exp(gd() * 0.6 + math.log(25.0))
    r0_500 = r0_500_for(target_fwhm_arcsec, wavelength_nm, L0)
    speeds = [ud() * MAX_WIND_M_S for _ in ALTITUDES_KM]
    directions = [ud() * 360.0 for _ in ALTITUDES_KM]
    return dict(r0_500=r0_500, L0=L0, weights=[float(w) for w in weights], speeds=speeds, directions_deg=directions)


def _radial_fwhm(k: np.ndarray, kprofile: np.ndarray, guess: float) -> float:
    """True FWHM (arcsec) of a round profile from its Fourier profile on ``k`` (rad/arcsec)."""
    from scipy.optimize import brentq
    from scipy.special import j0

    def profile(r: float) -> float:
        return float(np.trapezoid(k * kprofile * j0(k * r), k))

    half = 0.5 * profile(0.0)
    return 2.0 * brentq(lambda r: profile(r) - half, 1e-4, 10.0 * guess, xtol=1e-9)


class AtmosphericPsf:
    """A visit's atmosphere: phase screens, second kick and the optics Gaussian.

    Parameters:
        raw_seeing_arcsec: FWHM at 500 nm at zenith (the catalog's ``seeing``).
        band:              one of ``u g r i z y``.
        airmass:           the visit's airmass.
        exptime_s:         exposure time; the PSF integrates the moving screens over it.
        fwhm_geom_arcsec:  the visit's FWHMgeom, which the expected PSF's true FWHM is made to equal.
        seed:              seeds the layer draws and the screens.
        settings:          screen size and sampling, kcrit, chromatic exponent.
        gsparams:          GalSim parameters of the profiles. [default: None]
        screens:           the visit's instantiated screens written by :func:`write_screens`
                           (``screens.json``), memory-mapped read-only instead of built here; the
                           same draws, so the same pixels. [default: None: built in this process]

    Raises:
        RenderError: ``screens`` is missing, truncated or corrupt, or was built for another visit,
                     other settings or another GalSim (the message names the file).
    """

    def __init__(self, raw_seeing_arcsec: float, band: str, airmass: float, exptime_s: float,
                 fwhm_geom_arcsec: float, seed: int, settings: AtmosphereSettings = AtmosphereSettings(),
                 gsparams=None, screens: str | os.PathLike | None = None):
        import galsim

        self.band, self.airmass, self.exptime_s = band, float(airmass), float(exptime_s)
        self.settings, self.gsparams, self.seed = settings, gsparams, int(seed)
        self.wavelength_nm = LSE40_WAVELENGTH_NM[band]
        self.target_atm_fwhm_arcsec = raw_seeing_arcsec * airmass**0.6 * (self.wavelength_nm / 500.0) ** -0.3
        self.fwhm_geom_arcsec = float(fwhm_geom_arcsec)
        rng = galsim.BaseDeviate(self.seed)
        self.layers = draw_layers(rng, self.target_atm_fwhm_arcsec, self.wavelength_nm)
        lay = self.layers
        self.r0_m = lay["r0_500"] * (self.wavelength_nm / 500.0) ** 1.2
        self.kmax = settings.kcrit / self.r0_m
        # galsim.Atmosphere seeds layer i's screen with the i-th raw() of rng after the draws above
        seeds = rng.duplicate()
        self.layer_seeds = [int(seeds.raw()) for _ in ALTITUDES_KM]
        self.screens_path = None if screens is None else os.fspath(screens)
        if screens is None:
            self.atm = galsim.Atmosphere(
                r0_500=lay["r0_500"], L0=[lay["L0"]] * len(ALTITUDES_KM), speed=lay["speeds"],
                direction=[d * galsim.degrees for d in lay["directions_deg"]], altitude=list(ALTITUDES_KM),
                r0_weights=lay["weights"], rng=rng, screen_size=settings.screen_size_m,
                screen_scale=settings.screen_scale_m)
            self.atm.instantiate(kmax=self.kmax, check="phot")
        else:
            self.atm = load_screens(screens, self.screen_identity())
        self.aper = galsim.Aperture(diam=PUPIL_DIAMETER_M, obscuration=PUPIL_OBSCURATION, lam=self.wavelength_nm,
                                    screen_list=self.atm, gsparams=gsparams)
        self.second_kick = galsim.SecondKick(self.wavelength_nm, self.r0_m, PUPIL_DIAMETER_M, PUPIL_OBSCURATION,
                                             kcrit=settings.kcrit, gsparams=gsparams)
        self.optics_fwhm_arcsec = self._solve_optics()
        self.optics = (galsim.Gaussian(fwhm=self.optics_fwhm_arcsec, gsparams=gsparams)
                       if self.optics_fwhm_arcsec > 0 else None)

    # --- size -------------------------------------------------------------------------------------
    def _expected_atm(self):
        """imSim's FFT stand-in for the phase-screen PSF and its second kick: von Karman x Airy."""
        import galsim

        return galsim.Convolve(
            galsim.VonKarman(lam=self.wavelength_nm, r0_500=self.layers["r0_500"], L0=self.layers["L0"],
                             gsparams=self.gsparams),
            galsim.Airy(lam=self.wavelength_nm, diam=PUPIL_DIAMETER_M, obscuration=PUPIL_OBSCURATION,
                        gsparams=self.gsparams))

    @functools.cached_property
    def _expected_kprofile(self) -> tuple[np.ndarray, np.ndarray]:
        import galsim

        atm = self._expected_atm()
        k = np.linspace(0.0, 60.0 / self.target_atm_fwhm_arcsec, 6001)
        kv = np.array([atm.kValue(galsim.PositionD(float(ki), 0.0)).real for ki in k])
        return k, kv

    def expected_fwhm_arcsec(self, optics_fwhm_arcsec: float) -> float:
        """True FWHM (arcsec) of von Karman x Airy x Gaussian(``optics_fwhm_arcsec``)."""
        k, kv = self._expected_kprofile
        sigma = optics_fwhm_arcsec / (2.0 * math.sqrt(2.0 * math.log(2.0)))
        return _radial_fwhm(k, kv * np.exp(-0.5 * (k * sigma) ** 2), self.fwhm_geom_arcsec)

    def _solve_optics(self) -> float:
        """The Gaussian FWHM that makes the expected PSF as wide as FWHMgeom (0: already wider)."""
        from scipy.optimize import brentq

        target = self.fwhm_geom_arcsec
        if self.expected_fwhm_arcsec(0.0) >= target:
            return 0.0
        return float(brentq(lambda g: self.expected_fwhm_arcsec(g) - target, 0.0, 2.0 * target, xtol=1e-6))

    # --- the PSF ----------------------------------------------------------------------------------
    def _first_kick(self, u_arcsec: float, v_arcsec: float):
        import galsim

        return self.atm.makePSF(self.wavelength_nm, aper=self.aper,
                                theta=(float(u_arcsec) * galsim.arcsec, float(v_arcsec) * galsim.arcsec),
                                t0=0.0, exptime=self.exptime_s, second_kick=False, gsparams=self.gsparams)

    def _with_rest(self, first):
        import galsim

        parts = [first, self.second_kick] + ([self.optics] if self.optics is not None else [])
        return galsim.Convolve(parts, gsparams=self.gsparams)

    def psf(self, u_arcsec: float, v_arcsec: float, wavelength_nm: float | None = None):
        """The PSF (GalSim profile, photon shooting only) at field angle (u, v) from the boresight.

        Parameters:
            u_arcsec, v_arcsec: field angle in GalSim's tangent-plane frame (:func:`field_angles_arcsec`).
            wavelength_nm:      where to evaluate the chromatic PSF. [default: None, the band's
                                effective wavelength]
        """
        first = self._first_kick(u_arcsec, v_arcsec)
        if wavelength_nm is not None and wavelength_nm != self.wavelength_nm:
            first = first.dilate((wavelength_nm / self.wavelength_nm) ** self.settings.exponent)
        return self._with_rest(first)

    def chromatic(self, u_arcsec: float, v_arcsec: float):
        """imSim's chromatic PSF at (u, v): ``ChromaticAtmosphere`` (no DCR) x second kick x Gaussian."""
        import galsim

        first = galsim.ChromaticAtmosphere(self._first_kick(u_arcsec, v_arcsec), alpha=self.settings.exponent,
                                           base_wavelength=self.wavelength_nm, zenith_angle=0.0 * galsim.degrees)
        parts = [first, self.second_kick] + ([self.optics] if self.optics is not None else [])
        return galsim.Convolve(parts)

    @functools.cached_property
    def fft_psf(self):
        """For FFT drawing: imSim's stand-in (von Karman x Airy) x the Gaussian; round, field-independent."""
        import galsim

        atm = self._expected_atm()
        return atm if self.optics is None else galsim.Convolve(atm, self.optics, gsparams=self.gsparams)

    # --- resources --------------------------------------------------------------------------------
    @property
    def screen_bytes(self) -> int:
        """Bytes of the instantiated screens and their axes (GalSim's shared arrays, or the mapped files)."""
        total = 0
        for layer in self.atm:
            for key in ("f", "x", "y"):
                value = layer._objDict[key]
                total += ctypes.sizeof(value) if isinstance(value, ctypes.Array) else value.nbytes
        return total

    def screen_identity(self) -> dict:
        """What the screens are a function of: :func:`load_screens` checks a file against this."""
        import galsim

        return {"format": SCREENS_FORMAT, "galsim": galsim.__version__, "seed": self.seed,
                "band": self.band, "wavelength_nm": self.wavelength_nm,
                "settings": dataclasses.asdict(self.settings), "kmax": self.kmax,
                "layers": self.layers, "layer_seeds": self.layer_seeds}

    def summary(self) -> dict:
        return {"psf_model": "atmospheric", "r0_500_m": self.layers["r0_500"], "L0_m": self.layers["L0"],
                "atm_fwhm_target_arcsec": self.target_atm_fwhm_arcsec, "optics_fwhm_arcsec": self.optics_fwhm_arcsec,
                "screen_size_m": self.settings.screen_size_m, "screen_scale_m": self.settings.screen_scale_m,
                "screen_bytes": self.screen_bytes, "screens": self.screens_path or "built in process"}


def atmosphere_seed(visit) -> int:
    """The seed of a visit's atmosphere (from the catalog's seed and the visit number)."""
    return derive_seed("atmosphere", visit.seed, visit.visit)


@functools.lru_cache(maxsize=2)
def _cached(raw_seeing, band, airmass, exptime_s, fwhm_geom, seed, settings, gsparams, screens) -> AtmosphericPsf:
    return AtmosphericPsf(raw_seeing, band, airmass, exptime_s, fwhm_geom, seed, settings, gsparams, screens)


def for_visit(visit, scene: dict, fwhm_geom_arcsec: float, gsparams=None,
              screens: str | os.PathLike | None = None) -> AtmosphericPsf:
    """The visit's atmosphere, once per process (every sensor of the visit rendered in this process
    shares it; keyed by the visit's seeing, band, airmass, exposure, seed, the settings and ``screens``).

    Parameters:
        screens: the visit's ``screens.json`` (:func:`write_screens`, rule ``build_screens``), whose
                 arrays are memory-mapped: the render processes of a bundle share one copy in the
                 page cache. [default: None: the screens are built in this process]
    """
    return _cached(float(visit.seeing_arcsec), visit.band, airmass_ks(visit.altitude_deg), float(visit.exptime_s),
                   float(fwhm_geom_arcsec), atmosphere_seed(visit), AtmosphereSettings.from_scene(scene), gsparams,
                   None if screens is None else os.fspath(screens))


def field_angles_arcsec(ra_deg, dec_deg, ra0_deg: float, dec0_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """Gnomonic offsets (u, v) in arcsec of (ra, dec) from the boresight, in GalSim's tangent-plane
    frame (``CelestialCoord.project``, the frame imSim's field positions and GalSim's local WCS use)."""
    import galsim

    centre = galsim.CelestialCoord(ra0_deg * galsim.degrees, dec0_deg * galsim.degrees)
    u, v = centre.project_rad(np.radians(np.asarray(ra_deg, float)), np.radians(np.asarray(dec_deg, float)),
                              projection="gnomonic")
    scale = 180.0 / math.pi * 3600.0
    return np.asarray(u) * scale, np.asarray(v) * scale


# --- the screens on disk: built once per visit, memory-mapped by every render of the visit --------
SCREENS_FORMAT = 1
SCREENS_ARRAYS = {"f": "screens.npy", "axes": "screens_axes.npy"}
"""The arrays beside ``screens.json``: ``f`` the layers' wrapped screens (float64, layers x (npix+1)
x (npix+1), GalSim's ``LookupTable2D`` values in nm at 500 nm), ``axes`` their x and y (layers x 2 x
(npix+1), metres).  Plain ``.npy``: any numpy reads them (``np.load(path, mmap_mode='r')``)."""
_LAYER_SCALARS = ("npix", "screen_scale", "screen_size", "_altitude", "r0_500", "L0", "vx", "vy")
_TABLE_SCALARS = ("kmin", "kmax", "x0", "y0", "xperiod", "yperiod")
_HASH_CHUNK = 1 << 24
_REBUILD = "rerun the visit's build_screens (delete screens.json to make Snakemake remake it)"


def screen_files(json_path: str | os.PathLike) -> dict[str, Path]:
    """The array files of a ``screens.json`` (:data:`SCREENS_ARRAYS`, in its folder)."""
    folder = Path(json_path).parent
    return {key: folder / name for key, name in SCREENS_ARRAYS.items()}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:   # read(), not mmap: the check adds nothing to this process's RSS
        while chunk := fh.read(_HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def write_screens(atm: AtmosphericPsf, json_path: str | os.PathLike) -> dict:
    """Write a visit's instantiated screens for :func:`load_screens`: the arrays of
    :data:`SCREENS_ARRAYS` beside ``json_path``, then ``json_path`` (each atomically; the JSON last,
    so a finished-looking JSON has its arrays).

    The JSON holds what the screens are a function of (:meth:`AtmosphericPsf.screen_identity`: seed,
    band, settings, r0_500, L0, weights, winds, kmax, GalSim's version), each layer's parameters as
    GalSim holds them, and each array's file, shape, dtype, size and sha256.

    Returns:
        the JSON record.
    """
    import galsim

    json_path = Path(json_path)
    files = screen_files(json_path)
    layers = list(atm.atm)
    n = layers[0].npix + 1
    if any(layer.npix + 1 != n or not layer._objDict["instantiated"].value for layer in layers):
        raise RenderError(json_path, "the screens are not all instantiated with one size", "report this as a bug")
    arrays = {}
    for key, shape in (("f", (len(layers), n, n)), ("axes", (len(layers), 2, n))):
        with atomic_output(files[key]) as tmp:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float64, shape=shape)
            for i, layer in enumerate(layers):
                share = layer._getScreenShare()
                if key == "f":
                    out[i] = share["f"].reshape(n, n)
                else:
                    out[i, 0], out[i, 1] = share["x"], share["y"]
            out.flush()
            del out
            arrays[key] = {"file": files[key].name, "shape": list(shape), "dtype": "<f8",
                           "bytes": os.path.getsize(tmp), "sha256": _sha256(Path(tmp))}
    record = {**atm.screen_identity(), "arrays": arrays, "layers_galsim": []}
    for layer, seed in zip(layers, atm.layer_seeds):
        if layer._orig_rng != galsim.BaseDeviate(seed):
            raise RenderError(json_path, "galsim.Atmosphere no longer seeds its layers as dc2flow expects",
                              "check dc2flow.atmpsf against this GalSim's phase_screens.py")
        share = layer._getScreenShare()
        record["layers_galsim"].append({**{k: float(getattr(layer, k)) for k in _LAYER_SCALARS if k != "npix"},
                                        "npix": int(layer.npix), **{k: float(share[k]) for k in _TABLE_SCALARS}})
    with atomic_output(json_path) as tmp, open(tmp, "w") as fh:
        json.dump(record, fh, indent=1, sort_keys=True)
        fh.write("\n")
    return record


def build_screens(visit, scene: dict, fwhm_geom_arcsec: float, json_path: str | os.PathLike) -> dict:
    """``dc2flow screens``: build a visit's atmosphere with the render's :func:`for_visit` (the
    same seed and settings; the screens do not depend on GalSim's ``gsparams``) and write its
    screens (:func:`write_screens`).  Returns the JSON record.

    Parameters:
        visit:            the visit's header record.
        scene:            the ``scene`` config section (``atmosphere`` settings).
        fwhm_geom_arcsec: the visit's FWHMgeom (``dc2flow.partition.VisitConditions``), as the render's.
        json_path:        where to write ``screens.json``; the arrays go beside it.
    """
    return write_screens(for_visit(visit, scene, fwhm_geom_arcsec), json_path)


def _read_record(json_path: Path, identity: dict) -> dict:
    fix = _REBUILD
    try:
        with open(json_path) as fh:
            record = json.load(fh)
    except OSError as exc:
        raise RenderError(json_path, f"cannot read the screens record ({exc.strerror})", fix) from None
    except json.JSONDecodeError as exc:
        raise RenderError(json_path, f"not a screens record ({exc})", fix) from None
    if not isinstance(record, dict):
        raise RenderError(json_path, "not a screens record (not a JSON object)", fix)
    # JSON writes floats with repr: they read back exactly, so == is the right comparison
    for key, want in json.loads(json.dumps(identity)).items():
        if record.get(key) != want:
            raise RenderError(json_path, f"screens built for {key} {record.get(key)!r}, this render needs {want!r}",
                              fix)
    return record


def _load_array(path: Path, spec: dict, json_path: Path) -> np.ndarray:
    fix = _REBUILD
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        raise RenderError(path, f"cannot read the screens of {json_path.name} ({exc.strerror})", fix) from None
    if size != spec["bytes"]:
        raise RenderError(path, f"{size} bytes, {json_path.name} says {spec['bytes']} (truncated or replaced)", fix)
    if _sha256(path) != spec["sha256"]:
        raise RenderError(path, f"sha256 differs from {json_path.name}'s (corrupt or replaced)", fix)
    try:
        arr = np.load(path, mmap_mode="r")
    except ValueError as exc:
        raise RenderError(path, f"not a .npy array ({exc})", fix) from None
    if list(arr.shape) != spec["shape"] or arr.dtype != np.dtype(spec["dtype"]) or not arr.flags.c_contiguous:
        raise RenderError(path, f"array {arr.dtype.str} {list(arr.shape)}, {json_path.name} says "
                                f"{spec['dtype']} {spec['shape']} (C order)", fix)
    return arr


def load_screens(json_path: str | os.PathLike, identity: dict):
    """The visit's screens as a ``galsim.PhaseScreenList`` over read-only memory maps of the files
    :func:`write_screens` wrote: nothing is copied, so the processes that map the same files share
    one copy of them in the page cache, and only the pages the photons touch are read.

    Each layer is a ``galsim.AtmosphericScreen`` in the state ``instantiate()`` leaves it in (GalSim
    2.8's ``phase_screens.py``): its attributes, and its ``_objDict`` with ``f``, ``x``, ``y`` the
    mapped arrays instead of the ``multiprocessing.RawArray``s GalSim allocates (and zero-fills) in
    ``__init__``; its ``_tab2d`` (a ``LookupTable2D``, whose C++ side keeps pointers to ``f``, ``x``,
    ``y``) is then made from them on first use, as in a GalSim worker process.  Photon shooting
    reads only ``_tab2d``'s gradient; GalSim never writes to an instantiated frozen-flow screen.

    Parameters:
        json_path: the ``screens.json``.
        identity:  :meth:`AtmosphericPsf.screen_identity` of the atmosphere the render needs.

    Raises:
        RenderError: a file is missing, unreadable, truncated (size), corrupt (sha256) or of the
                     wrong shape, or the record was made for another seed, band, settings or GalSim
                     version; the message names the file.
    """
    import multiprocessing

    import galsim

    json_path = Path(json_path)
    record = _read_record(json_path, identity)
    files = screen_files(json_path)
    arrays = record.get("arrays", {})
    if set(arrays) != set(SCREENS_ARRAYS):
        raise RenderError(json_path, f"lists arrays {sorted(arrays)}, not {sorted(SCREENS_ARRAYS)}",
                          _REBUILD)
    f = _load_array(files["f"], arrays["f"], json_path)
    axes = _load_array(files["axes"], arrays["axes"], json_path)
    ctx = multiprocessing.get_context(None)   # what AtmosphericScreen(mp_context=None) uses
    screens = []
    for i, (lay, seed) in enumerate(zip(record["layers_galsim"], record["layer_seeds"])):
        n = lay["npix"] + 1
        if f.shape[1:] != (n, n) or axes.shape[2] != n:
            raise RenderError(files["f"], f"layer {i} has npix {lay['npix']} in {json_path.name}, the arrays "
                                          f"{f.shape[1] - 1}", _REBUILD)
        screen = galsim.AtmosphericScreen.__new__(galsim.AtmosphericScreen)
        screen.__dict__.update({k: lay[k] for k in _LAYER_SCALARS})
        screen.__dict__.update(npix=int(lay["npix"]), time_step=None, alpha=1.0, _suppress_warning=False,
                               _orig_rng=galsim.BaseDeviate(seed), rng=galsim.BaseDeviate(seed), dynamic=True,
                               reversible=True, mp_context=ctx, _shareKey=id(screen))
        screen._objDict = {"f": f[i], "x": axes[i, 0], "y": axes[i, 1],
                           **{k: ctx.RawValue("d", lay[k]) for k in _TABLE_SCALARS},
                           "alpha": ctx.RawValue("d", 1.0), "time": ctx.RawValue("d", 0.0),
                           "instantiated": ctx.RawValue("b", True), "refcount": ctx.RawValue("i", 1),
                           "lock": ctx.Lock()}
        galsim.phase_screens._GSScreenShare[screen._shareKey] = screen._objDict
        screens.append(screen)
    return galsim.PhaseScreenList(screens)
