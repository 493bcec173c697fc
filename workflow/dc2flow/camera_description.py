"""Rubin's camera description (lsst/obs_lsst ``policy/`` files) turned into dc2flow's tables.

This reads the YAML files the LSST Science Pipelines build LSSTCam's ``cameraGeom`` from, and
applies obs_lsst's own assembly rules (``generateCamera.py``), without the Rubin software stack:

- a sensor's focal-plane position (``offset``, mm, of its reference pixel ``refpos``) is the raft
  centre (``rafts.yaml`` ``offset``) + the sensor's place in the raft (``RAFT_<vendor>.ccds.Sij.offset``
  in ``cameraHeader.yaml``) rotated by the raft's ``yaw`` + the per-sensor correction
  (``geometryWithinRaft.Sij.offset`` of ``<camera>/Rij.yaml``);
- its yaw is the raft's ``yaw`` + ``geometryWithinRaft.Sij.yaw`` (+ the CCD template's ``yaw``);
- pixel -> focal plane is DM's ``Orientation``: ``fp = offset + R(yaw) (pixel - refpos) * pixelSize``,
  pixel x along the serial register, 0-based pixel centres (DM's convention), no transposition
  (``transposeDetector: false``);
- detector numbers are ``id0`` of the raft + ``id`` of the slot (R22_S11 = 90 + 4 = 94); the vendor
  (``detectorType``), serials and per-amplifier gain, read noise and saturation come from the
  raft files; the amplifier layout (raw boxes, read corner, flips, position ``ixy``, HDU) from the
  vendor's CCD template; the plate scale and the radial FocalPlane -> FieldAngle polynomial from
  ``cameraTransforms.yaml``.

``scripts/derive_camera_table.py`` runs :func:`derive` on ``../shared/data/obs_lsst/policy`` and
writes the packaged tables (``dc2flow/data/lsstcam_sensors.csv``, ``lsstcam_amplifiers.csv``,
``lsstcam_camera.json``); config ``camera.description`` may name another policy folder of the same
layout (e.g. obs_lsst's ``policy/imsim`` with DC2's perturbed rafts), derived at run time.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from .errors import CameraDescriptionError

SENSOR_COLUMNS = ("det_num", "det_name", "vendor", "serial", "nx", "ny", "x_mm", "y_mm", "yaw_deg",
                  "refpos_x", "refpos_y", "pixel_size_mm")
AMPLIFIER_COLUMNS = ("det_name", "amp", "hdu", "gain", "read_noise", "saturation", "flip_x", "flip_y", "ix", "iy")
LAYOUT_KEYS = ("readCorner", "rawBBox", "rawDataBBox", "rawSerialPrescanBBox", "rawSerialOverscanBBox",
               "rawParallelPrescanBBox", "rawParallelOverscanBBox")


@dataclass
class CameraDescription:
    """The facts dc2flow takes from a camera description.

    Parameters:
        name:          the camera's name (``LSSTCam``).
        sensors:       one dict per science sensor, keys :data:`SENSOR_COLUMNS`, by detector number.
        amplifiers:    one dict per amplifier, keys :data:`AMPLIFIER_COLUMNS`.
        plate_scale_arcsec_per_mm: the nominal plate scale.
        field_angle_coeffs: the radial FocalPlane -> FieldAngle polynomial ``c0 + c1 r + c2 r^2 ...``
                       (r in mm; the field angle is ``plate_scale * sum c_i r^i``).
        amplifier_layout: per vendor, the amplifier geometry of :data:`LAYOUT_KEYS`.
        source:        the policy folder it was read from.
    """

    name: str
    sensors: list[dict]
    amplifiers: list[dict]
    plate_scale_arcsec_per_mm: float
    field_angle_coeffs: list[float]
    amplifier_layout: dict = field(default_factory=dict)
    source: str = ""

    def sensors_csv(self) -> str:
        return _csv(SENSOR_COLUMNS, self.sensors)

    def amplifiers_csv(self) -> str:
        return _csv(AMPLIFIER_COLUMNS, self.amplifiers)

    def camera_json(self) -> str:
        return json.dumps({"name": self.name, "plate_scale_arcsec_per_mm": self.plate_scale_arcsec_per_mm,
                           "field_angle_coeffs": self.field_angle_coeffs,
                           "amplifier_layout": self.amplifier_layout}, indent=1, sort_keys=True) + "\n"


def _csv(columns, rows) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (repr(float(v)) if isinstance(v, float) else v) for k, v in row.items()})
    return out.getvalue()


def _load_yaml(path: Path):
    import yaml

    from .config import load_yaml

    try:
        with open(path) as fh:
            return load_yaml(fh)
    except OSError as e:
        raise CameraDescriptionError(path, "cannot read the camera description file", str(e),
                                     "give camera.description a folder holding obs_lsst's policy files") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise CameraDescriptionError(where, "not valid YAML", str(getattr(e, "problem", e)),
                                     "fix the file") from None


def _get(mapping, key, where: str, fix: str = "add it as obs_lsst's files have it"):
    if not isinstance(mapping, dict) or key not in mapping:
        raise CameraDescriptionError(where, f"no '{key}'", fix=fix)
    return mapping[key]


def _pair(value, where: str) -> tuple[float, float]:
    try:
        x, y = (float(v) for v in value)
    except (TypeError, ValueError):
        raise CameraDescriptionError(where, "not a pair of numbers", value, "give [x, y]") from None
    if not (math.isfinite(x) and math.isfinite(y)):
        raise CameraDescriptionError(where, "not finite", value, "give finite numbers")
    return x, y


def derive(policy_dir: str | os.PathLike, camera_dir: str | None = None) -> CameraDescription:
    """Read an obs_lsst-style ``policy/`` folder into a :class:`CameraDescription`.

    Parameters:
        policy_dir:  the folder holding ``rafts.yaml``, ``cameraHeader.yaml``, ``cameraTransforms.yaml``
                     and a folder of per-raft files.
        camera_dir:  that folder's name [default: None, ``lsstCam`` if present, else the only
                     sub-folder holding ``R??.yaml`` files].

    Raises:
        CameraDescriptionError: a file or key is missing or malformed (names the file and key).
    """
    policy = Path(policy_dir)
    if not policy.is_dir():
        raise CameraDescriptionError(policy, "not a folder", fix="give camera.description obs_lsst's policy folder")
    if camera_dir is None:
        candidates = sorted(p.name for p in policy.iterdir() if p.is_dir() and any(p.glob("R[0-4][0-4].yaml")))
        camera_dir = "lsstCam" if "lsstCam" in candidates else (candidates[0] if len(candidates) == 1 else None)
        if camera_dir is None:
            raise CameraDescriptionError(policy, "cannot tell which folder holds the raft files", candidates,
                                         "keep one folder of R??.yaml files (or lsstCam/)")
    rafts_path, header_path = policy / "rafts.yaml", policy / "cameraHeader.yaml"
    transforms_path = policy / "cameraTransforms.yaml"
    rafts = _get(_load_yaml(rafts_path), "rafts", str(rafts_path))
    header = _load_yaml(header_path)
    transforms = _load_yaml(transforms_path)
    name = str(header.get("name", "LSSTCam")) if isinstance(header, dict) else "LSSTCam"

    sensors, amplifiers, layout = [], [], {}
    for raft_file in sorted((policy / camera_dir).glob("R[0-4][0-4].yaml")):
        raft_name = raft_file.stem
        doc = _get(_load_yaml(raft_file), raft_name, str(raft_file))
        where = f"{raft_file}: {raft_name}"
        vendor = str(_get(doc, "detectorType", where))
        template = _get(header, f"RAFT_{vendor}", f"{header_path}", f"describe the {vendor} raft layout")
        ccd_template = _get(header, f"CCD_{vendor}", f"{header_path}")
        amp_template = _get(header, f"AMP_{vendor}", f"{header_path}")
        layout[vendor] = {k: amp_template[k] for k in LAYOUT_KEYS if k in amp_template}
        raft = _get(rafts, raft_name, f"{rafts_path}: rafts", f"give raft {raft_name} an offset and id0")
        r_where = f"{rafts_path}: rafts.{raft_name}"
        raft_x, raft_y = _pair(_get(raft, "offset", r_where), f"{r_where}.offset")
        raft_yaw = float(raft.get("yaw", 0.0))
        id0 = int(_get(raft, "id0", r_where))
        within = doc.get("geometryWithinRaft", {}) or {}
        serials = _get(doc, "ccdSerials", where)
        amp_values = _get(doc, "amplifiers", where)
        c, s = math.cos(math.radians(raft_yaw)), math.sin(math.radians(raft_yaw))
        for slot in sorted(serials):
            ccd = _get(_get(template, "ccds", f"{header_path}: RAFT_{vendor}"), slot,
                       f"{header_path}: RAFT_{vendor}.ccds")
            c_where = f"{header_path}: RAFT_{vendor}.ccds.{slot}"
            lx, ly = _pair(_get(ccd, "offset", c_where), f"{c_where}.offset")
            dx, dy = _pair(within.get(slot, {}).get("offset", (0.0, 0.0)), f"{where}.geometryWithinRaft.{slot}.offset")
            yaw = raft_yaw + float(within.get(slot, {}).get("yaw", 0.0)) + float(ccd.get("yaw", 0.0))
            (x0, y0), (x1, y1) = (_pair(corner, f"{c_where}.bbox") for corner in _get(ccd, "bbox", c_where))
            ref_x, ref_y = _pair(_get(ccd, "refpos", c_where), f"{c_where}.refpos")
            px, py = _pair(_get(ccd, "pixelSize", c_where), f"{c_where}.pixelSize")
            if px != py:
                raise CameraDescriptionError(f"{c_where}.pixelSize", "non-square pixels are not supported", (px, py))
            if bool(ccd.get("transposeDetector", False)):
                raise CameraDescriptionError(f"{c_where}.transposeDetector", "transposed detectors are not supported",
                                             True)
            det_name = f"{raft_name}_{slot}"
            sensors.append({
                "det_num": id0 + int(_get(ccd, "id", c_where)), "det_name": det_name, "vendor": vendor,
                "serial": str(serials[slot]), "nx": int(x1 - x0 + 1), "ny": int(y1 - y0 + 1),
                "x_mm": raft_x + c * lx - s * ly + dx, "y_mm": raft_y + s * lx + c * ly + dy,
                "yaw_deg": yaw % 360.0, "refpos_x": ref_x, "refpos_y": ref_y, "pixel_size_mm": px})
            amps = _get(ccd_template, "amplifiers", f"{header_path}: CCD_{vendor}")
            values = _get(amp_values, slot, f"{where}.amplifiers")
            for amp in sorted(amps, key=lambda a: int(amps[a]["hdu"])):
                geometry = amps[amp]
                value = _get(values, amp, f"{where}.amplifiers.{slot}")
                a_where = f"{where}.amplifiers.{slot}.{amp}"
                flip_x, flip_y = (bool(v) for v in _get(geometry, "flipXY", f"{header_path}: CCD_{vendor}.{amp}"))
                ix, iy = (int(v) for v in _get(geometry, "ixy", f"{header_path}: CCD_{vendor}.{amp}"))
                amplifiers.append({
                    "det_name": det_name, "amp": amp, "hdu": int(geometry["hdu"]),
                    "gain": float(_get(value, "gain", a_where)), "read_noise": float(_get(value, "readNoise", a_where)),
                    "saturation": float(_get(value, "saturation", a_where)),
                    "flip_x": int(flip_x), "flip_y": int(flip_y), "ix": ix, "iy": iy})
    if not sensors:
        raise CameraDescriptionError(policy / camera_dir, "no raft files R??.yaml", fix="give obs_lsst's raft files")
    sensors.sort(key=lambda r: r["det_num"])
    nums = [r["det_num"] for r in sensors]
    if len(set(nums)) != len(nums):
        raise CameraDescriptionError(rafts_path, "two sensors share a detector number", fix="fix the rafts' id0")
    plate = float(_get(transforms, "plateScale", str(transforms_path)))
    field_angle = _get(_get(transforms, "transforms", str(transforms_path)), "FieldAngle",
                       f"{transforms_path}: transforms")
    coeffs = [float(c) for c in _get(field_angle, "coeffs", f"{transforms_path}: transforms.FieldAngle")]
    return CameraDescription(name=name, sensors=sensors, amplifiers=amplifiers, plate_scale_arcsec_per_mm=plate,
                             field_angle_coeffs=coeffs, amplifier_layout=layout, source=str(policy))
