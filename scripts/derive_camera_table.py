#!/usr/bin/env python3
"""Derive dc2flow's LSSTCam tables from Rubin's camera description (lsst/obs_lsst policy files).

    python scripts/derive_camera_table.py [POLICY_DIR] [--out workflow/dc2flow/data]

POLICY_DIR defaults to ../shared/data/obs_lsst/policy.  Writes, atomically:

- ``lsstcam_sensors.csv``: the 189 science sensors (det_num, det_name, vendor, serial, nx, ny,
  x_mm, y_mm of the reference pixel, yaw_deg, refpos_x, refpos_y, pixel_size_mm);
- ``lsstcam_amplifiers.csv``: per amplifier its HDU, gain, read noise, saturation, flips, position;
- ``lsstcam_camera.json``: plate scale, the radial FocalPlane -> FieldAngle polynomial, and each
  vendor's amplifier layout.

The rules that turn the policy files into these facts are in ``dc2flow/camera_description.py``
(obs_lsst's own ``generateCamera.py`` assembly, in DM's pixel conventions).  tests/test_camera.py
derives them again from the shared files and checks the packaged tables are what this writes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))

from dc2flow.camera_description import derive  # noqa: E402
from dc2flow.io import atomic_output  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("policy", nargs="?", default=str(ROOT.parent / "shared/data/obs_lsst/policy"))
    parser.add_argument("--out", default=str(ROOT / "workflow/dc2flow/data"))
    args = parser.parse_args(argv)
    desc = derive(args.policy)
    out = Path(args.out)
    for name, text in (("lsstcam_sensors.csv", desc.sensors_csv()), ("lsstcam_amplifiers.csv", desc.amplifiers_csv()),
                       ("lsstcam_camera.json", desc.camera_json())):
        with atomic_output(out / name) as tmp:
            Path(tmp).write_text(text)
        print(f"wrote {out / name}")
    print(f"{len(desc.sensors)} sensors, {len(desc.amplifiers)} amplifiers from {args.policy}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
