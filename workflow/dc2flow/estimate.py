"""Resource estimates: predicted peak memory and wall time of every sensor's render job.

DC2 charged every sensor a flat 2-3 GB and discovered dense fields and bright stars by
out-of-memory kills. Here each sensor's demand is predicted from its own partition, before any
job runs, with a linear model over features that drive the renderer's cost:

==================  ===========================================================================
feature             meaning
==================  ===========================================================================
``image_mpix``      pixels of the sensor in the run's camera (LSSTCam: ITL 16.3, e2v 16.4 Mpix): the float32 image, noise, FITS
``n_objects``       objects in the partition (thousands): per-object set-up and bookkeeping
``n_knots``         knots objects (thousands): RandomKnots are the costliest profiles to build
``phot_gphotons``   photons to shoot, in 1e9: every photon-shot object's expected flux
``fft_mpix``        total FFT stamp area (Mpix) of the bright objects drawn by FFT
``max_fft_mpix``    the largest single FFT stamp (Mpix): GalSim's FFT buffers scale with it
``max_phot_gphotons`` the largest photon-shot object (1e9 photons): photon arrays scale with it
==================  ===========================================================================

``mem_gb = m_0 + sum_k m_k f_k`` (plus the job overhead of :func:`estimate_visit`) and ``runtime_s = t_0 + sum_k t_k f_k`` with non-negative
coefficients fitted by :mod:`dc2flow.calibrate` from the ``benchmark:`` records of real render jobs
and scaled up so that predictions err high. The model is a small JSON file
(:data:`DEFAULT_MODEL` ships with the package; ``estimate.model`` in the config points at another).

The per-exposure table (``estimates/{visit}.tsv``, ``{visit}`` the exposure key of
:func:`dc2flow.campaign.exposure_key`) has one row per sensor: ``visit, snap, det_name, mem_gb,
runtime_s``, the features and ``visit_shared_gb``, tab-separated.  ``visit_shared_gb`` (the same on
every row of an exposure) is memory the exposure's renders share on a node: with ``scene.psf_model:
atmospheric``, its phase screens, which every render memory-maps read-only
(:mod:`dc2flow.atmpsf`); the bundler adds it to ``bundle.visit_overhead_gb``, once per exposure in a
bundle, and ``mem_gb`` holds only what each render holds itself.  :func:`read_estimates` is its one reader (the bundler,
the forecast, calibration and the resource figure all use it); it checks every value.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import camera
from .catalog import Visit
from .errors import ConfigError, EstimateError
from .partition import MAX_FFT_SIZE, VisitConditions, build_object, read_partition_table
from .io import atomic_output

FEATURES = ("image_mpix", "n_objects", "n_knots", "phot_gphotons", "fft_mpix", "max_fft_mpix",
            "max_phot_gphotons")
ESTIMATE_COLUMNS = ("visit", "snap", "det_name", "mem_gb", "runtime_s", *FEATURES, "visit_shared_gb")
ESTIMATE_REQUIRED = tuple(c for c in ESTIMATE_COLUMNS if c not in ("snap", "visit_shared_gb"))
"""The columns an estimates table must have: a table without ``snap`` or ``visit_shared_gb`` (written
before they existed) reads them as 0."""
JOB_COLUMNS = ("visit", "det_name", "mem_gb")
"""The columns a table of sensor jobs needs at least (``snap``, ``runtime_s`` and the features are optional there:
an absent ``snap`` is 0, as in tables written before the column)."""
DEFAULT_MODEL = Path(__file__).resolve().parent / "data" / "resource_model.json"
_PARTITION_COLUMNS = ["flux", "stamp_radius_px", "obj_type"]


@dataclass(frozen=True)
class ResourceModel:
    """Linear predictors of a render job's peak memory (GB) and wall time (s).

    Parameters:
        mem_intercept_gb, runtime_intercept_s: the constant terms.
        mem_coef, runtime_coef: feature name -> coefficient (non-negative; missing = 0).
        mem_scale, runtime_scale: safety factors applied to the linear prediction (>= 1).
        meta: where the coefficients came from (records, date, errors), for people.
    """

    mem_intercept_gb: float
    runtime_intercept_s: float
    mem_coef: dict = field(default_factory=dict)
    runtime_coef: dict = field(default_factory=dict)
    mem_scale: float = 1.0
    runtime_scale: float = 1.0
    meta: dict = field(default_factory=dict)

    def predict(self, features: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(mem_gb, runtime_s) arrays for feature arrays keyed by :data:`FEATURES`."""
        n = len(next(iter(features.values())))
        mem = np.full(n, self.mem_intercept_gb, dtype=float)
        run = np.full(n, self.runtime_intercept_s, dtype=float)
        for name in FEATURES:
            mem += self.mem_coef.get(name, 0.0) * np.asarray(features[name], dtype=float)
            run += self.runtime_coef.get(name, 0.0) * np.asarray(features[name], dtype=float)
        return mem * self.mem_scale, run * self.runtime_scale

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    def write(self, path: str | os.PathLike) -> None:
        with atomic_output(path) as tmp, open(tmp, "w") as fh:
            json.dump(self.to_dict(), fh, indent=1, sort_keys=True)
            fh.write("\n")

    @classmethod
    def read(cls, path: str | os.PathLike | None = None) -> "ResourceModel":
        """Read a model file (the packaged default when ``path`` is None).

        Raises:
            ConfigError: when the file is missing or not a model.
        """
        path = path or DEFAULT_MODEL
        try:
            with open(path) as fh:
                data = json.load(fh)
            model = cls(**data)
        except FileNotFoundError:
            raise ConfigError("estimate.model", str(path), "file not found",
                              "null (the packaged model) or a file written by 'dc2flow calibrate'") from None
        except (json.JSONDecodeError, TypeError) as exc:
            raise ConfigError("estimate.model", str(path), f"not a resource model ({exc})",
                              "a file written by 'dc2flow calibrate'") from None
        bad = sorted((set(model.mem_coef) | set(model.runtime_coef)) - set(FEATURES))
        if bad:
            raise ConfigError("estimate.model", str(path), f"unknown feature {bad[0]!r}", list(FEATURES))
        return model


def sensor_features(table, det_name: str, fft_flux_threshold: float,
                    cam: camera.Camera | None = None) -> dict[str, float]:
    """The model's features for one sensor, from its partition table (columns :data:`_PARTITION_COLUMNS`)
    and its size in ``cam`` (the run's camera, :func:`dc2flow.camera.camera_for`) [default: None, LSSTCam]."""
    flux = table["flux"].to_numpy()
    side = 2.0 * table["stamp_radius_px"].to_numpy().astype(float) + 1.0
    kind = table["obj_type"].to_numpy(zero_copy_only=False)
    fft = flux > fft_flux_threshold
    sensor = (cam or camera.LSSTCAM).sensor(det_name)
    return {
        "image_mpix": sensor.nx * sensor.ny / 1e6,
        "n_objects": len(flux) / 1e3,
        "n_knots": float(np.count_nonzero(kind == "knots")) / 1e3,
        "phot_gphotons": float(flux[~fft].sum()) / 1e9,
        "fft_mpix": float((side[fft] ** 2).sum()) / 1e6,
        "max_fft_mpix": float((side[fft] ** 2).max(initial=0.0)) / 1e6,
        "max_phot_gphotons": float(flux[~fft].max(initial=0.0)) / 1e9,
    }


FFT_BYTES_PER_KPIXEL = 16.0     # GalSim's FFT of an object: a complex128 k-image of Nk x Nk
FFT_BASE_GB = 0.25               # Python, GalSim, the sensor's image and table besides the FFT
FFT_FLOOR_OBJECTS = 50           # the largest FFT-drawn extended objects of a sensor whose FFT is sized
_FFT_COLUMNS = ("obj_type", "flux", "major_arcsec", "minor_arcsec", "pa_deg", "sersic_n", "npoints",
                "gamma1", "gamma2", "kappa", "stamp_radius_px")


def fft_size(profile, pixel_scale_arcsec: float, stamp_px: int) -> int:
    """Nk: the side of the k-image GalSim makes to draw ``profile`` by FFT onto a ``stamp_px`` stamp
    (GalSim 2.8's ``drawFFT_makeKImage``: the profile's good image size or the stamp, rounded up to a
    good FFT size, then enough k-space to reach the profile's maxk)."""
    import galsim

    n = galsim.Image.good_fft_size(max(profile.getGoodImageSize(pixel_scale_arcsec), stamp_px))
    n = max(n, profile.gsparams.minimum_fft_size)
    dk = 2.0 * math.pi / (n * pixel_scale_arcsec)
    return n if n * dk / 2.0 > profile.maxk else int(math.ceil(profile.maxk / dk)) * 2


def fft_floor_gb(table, psf, fft_flux_threshold: float) -> float:
    """The memory the largest FFT of a sensor's render needs, GB (0 when nothing extended is drawn by
    FFT): ``16 Nk^2`` bytes for the k-image of the worst of its largest bright galaxies, plus
    :data:`FFT_BASE_GB`.  The fitted model sees stamps, not GalSim's k-space: a bright galaxy of
    large size and Sersic index can make a k-image of ~14,000^2 (3 GB) whatever its stamp, which the
    parser accepts (``catalog.VALUE_RANGES``), so the estimate is never below this.

    Measured peak RSS of one such draw on a 2049-px stamp (0.7" seeing): n 4, 10" 0.39 GB (this
    floor 0.61); n 6.2, 5" 0.77 (1.05); n 4, 20" 1.00 (1.32); n 6.2, 10" 2.82 GB (3.45).

    Parameters:
        table:  the sensor's partition table (columns :data:`_FFT_COLUMNS`).
        psf:    the visit's GalSim PSF, made with ``maximum_fft_size`` :data:`MAX_FFT_SIZE` (see
                :func:`_fft_psf`).
    """
    cols = {c: table[c].to_numpy(zero_copy_only=False) for c in _FFT_COLUMNS}
    bright = np.flatnonzero((cols["flux"] > fft_flux_threshold) & (cols["obj_type"] != "point"))
    if bright.size == 0:
        return 0.0
    kappa = cols["kappa"][bright]
    mu = 1.0 / np.maximum((1.0 - kappa) ** 2 - (cols["gamma1"][bright] ** 2 + cols["gamma2"][bright] ** 2), 1e-6)
    size = np.sqrt(cols["major_arcsec"][bright] * cols["minor_arcsec"][bright] * np.abs(mu))
    worst = bright[np.argsort(-size * (1.0 + np.nan_to_num(cols["sersic_n"][bright])), kind="stable")[:FFT_FLOOR_OBJECTS]]
    gsparams = psf.gsparams
    nk = 0
    for i in worst:
        profile = build_object(str(cols["obj_type"][i]), float(cols["flux"][i]), float(cols["major_arcsec"][i]),
                               float(cols["minor_arcsec"][i]), float(cols["pa_deg"][i]), float(cols["sersic_n"][i]),
                               int(cols["npoints"][i]), float(cols["gamma1"][i]), float(cols["gamma2"][i]),
                               float(cols["kappa"][i]), psf, 0, gsparams)
        nk = max(nk, fft_size(profile, camera.PIXEL_SCALE_ARCSEC, 2 * int(cols["stamp_radius_px"][i]) + 1))
    return FFT_BYTES_PER_KPIXEL * nk * nk / 1e9 + FFT_BASE_GB


def _fft_psf(visit: Visit, scene: dict):
    """The visit's GalSim PSF as the render makes it (its ``maximum_fft_size``), for :func:`fft_floor_gb`."""
    import galsim

    return VisitConditions.from_visit(visit, scene).psf.galsim(galsim.GSParams(maximum_fft_size=MAX_FFT_SIZE))


def estimate_visit(visit: Visit, partitions: dict[str, str], model: ResourceModel,
                   fft_flux_threshold: float, job_overhead_gb: float = 0.0,
                   min_mem_gb: float = 0.0, scene: dict | None = None,
                   cam: camera.Camera | None = None) -> list[dict]:
    """One row per sensor: visit, snap, det_name, mem_gb, runtime_s and the features.

    Each sensor's size (``image_mpix``) is its size in ``cam``, the run's camera (config
    ``camera.description`` through :func:`dc2flow.camera.camera_for`) [default: None, LSSTCam].

    ``mem_gb`` is what the sensor's job should request: the model's prediction for the render
    command, at least ``min_mem_gb`` (the validation that follows the render in the same job asks
    the same), plus ``job_overhead_gb``, the memory of the scheduler's own processes in the job
    (Snakemake runs inside every Slurm job step: ~130 MiB each, measured).  With ``scene`` (the
    config section, for the visit's PSF) it is also at least :func:`fft_floor_gb`: what GalSim's
    largest FFT on the sensor takes.  With ``scene.psf_model: atmospheric`` each job adds what its
    render holds privately for the atmosphere (:attr:`dc2flow.atmpsf.AtmosphereSettings.render_private_gb`:
    PSF objects, aperture, second kick), and every row's ``visit_shared_gb`` is the screens the
    visit's renders map and share (:attr:`~dc2flow.atmpsf.AtmosphereSettings.shared_memory_gb`:
    3.2 GB for imSim's 819.2 m at 0.1 m, 0.81 GB for 819.2 m at 0.2 m, 0.05 GB for 204.8 m at 0.2 m),
    which the bundler counts once per visit in a bundle; without atmospheric screens it is 0.
    """
    psf = _fft_psf(visit, scene) if scene is not None else None   # once per visit
    atmosphere_gb = shared_gb = 0.0
    if scene is not None and scene.get("psf_model", "parametric") == "atmospheric":
        from .atmpsf import AtmosphereSettings

        settings = AtmosphereSettings.from_scene(scene)
        atmosphere_gb = settings.render_private_gb      # each render's own
        shared_gb = settings.shared_memory_gb           # the mapped screens: once per visit in a bundle
    columns = list(dict.fromkeys([*_PARTITION_COLUMNS, *(_FFT_COLUMNS if psf is not None else ())]))
    rows = []
    for det_name in sorted(partitions, key=lambda n: camera.get_sensor(n).det_num):
        table = read_partition_table(partitions[det_name], columns)   # one read for the features and the floor
        feats = sensor_features(table, det_name, fft_flux_threshold, cam)
        mem, run = model.predict({k: [v] for k, v in feats.items()})
        floor = fft_floor_gb(table, psf, fft_flux_threshold) if psf is not None else 0.0
        rows.append({"visit": visit.visit, "snap": visit.snap, "det_name": det_name,
                     "mem_gb": max(float(mem[0]), min_mem_gb, floor) + atmosphere_gb + job_overhead_gb,
                     "runtime_s": float(run[0]), **feats, "visit_shared_gb": shared_gb})
    return rows


def write_estimates(path: str | os.PathLike, rows: list[dict]) -> None:
    """Write the per-visit table (tab-separated, header first), atomically."""
    with atomic_output(path) as tmp, open(tmp, "w") as fh:
        fh.write("\t".join(ESTIMATE_COLUMNS) + "\n")
        for row in rows:
            fh.write("\t".join(_fmt(row[c]) for c in ESTIMATE_COLUMNS) + "\n")


def read_estimates(path: str | os.PathLike, required: tuple[str, ...] = ESTIMATE_REQUIRED) -> list[dict]:
    """Rows of an estimates table, every value checked: the one reader of ``estimates/{visit}.tsv``.

    Also reads any table of sensor jobs with a header (``dc2flow bundle IN.csv``): the delimiter is a
    tab if the header has one, else a comma; columns other than :data:`ESTIMATE_COLUMNS` are ignored.

    Parameters:
        path:      the file.
        required:  the columns it must have [default: :data:`ESTIMATE_REQUIRED`, all but ``snap``
                   and ``visit_shared_gb``]; a job table needs only :data:`JOB_COLUMNS` (a missing
                   ``runtime_s``, feature or ``visit_shared_gb`` then reads as 0; a missing
                   ``snap``, as in tables written before it, is snap 0).

    Returns:
        one dict per row with every column of :data:`ESTIMATE_COLUMNS`: ``visit`` and ``snap`` ints,
        ``det_name`` a science sensor's name, the others finite floats >= 0.

    Raises:
        EstimateError: the file is missing or empty, a column is missing (``sensor`` is the old
                       name of ``det_name``), a value is not a finite number >= 0 or not a science
                       sensor; the message names ``file:line`` and the column.
    """
    path = os.fspath(path)
    try:
        fh = open(path, newline="")
    except OSError as exc:
        raise EstimateError(path, f"cannot read the table ({exc.strerror})", fix="check the path") from None
    with fh:
        first = fh.readline()
        if not first.strip():
            raise EstimateError(f"{path}:1", "no header", fix="write it with dc2flow estimate")
        delimiter = "\t" if "\t" in first else ","
        header = [h.strip() for h in first.rstrip("\r\n").split(delimiter)]
        for col in required:
            if col not in header:
                old = " ('sensor' is its old name: rerun dc2flow estimate)" if col == "det_name" and "sensor" in header else ""
                raise EstimateError(f"{path}:1", f"missing column '{col}'{old}", ",".join(header),
                                    "write it with dc2flow estimate (columns " + ", ".join(required) + ")")
        index = {name: k for k, name in enumerate(header) if name in ESTIMATE_COLUMNS}
        rows = []
        for lineno, line in enumerate(fh, start=2):
            if not line.strip():
                continue
            cells = line.rstrip("\r\n").split(delimiter)
            row = {}
            for col in ESTIMATE_COLUMNS:
                text = cells[index[col]].strip() if col in index and index[col] < len(cells) else ""
                if col == "det_name":
                    if text not in camera.DET_NAMES:
                        raise EstimateError(f"{path}:{lineno}", f"column '{col}' is not an LSSTCam science sensor",
                                            text, "fix or delete the line")
                    row[col] = text
                    continue
                integer = col in ("visit", "snap")
                if not text and col not in required:
                    row[col] = 0 if integer else 0.0
                    continue
                try:
                    value = int(text) if integer else float(text)
                except ValueError:
                    value = None
                if value is None or not math.isfinite(value) or value < 0:
                    what = "an integer >= 0" if integer else "a finite number >= 0"
                    raise EstimateError(f"{path}:{lineno}", f"column '{col}' is not {what}", text,
                                        "fix or delete the line (or rerun dc2flow estimate)")
                row[col] = value
            rows.append(row)
    return rows


def _fmt(value) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.6g}"
    return str(value)
