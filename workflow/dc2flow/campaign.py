"""A campaign: the visits named by a configuration and the files the pipeline makes for them.

Snakemake's ``common.smk`` asks this module for the visit list (reading only catalog headers) and
for the output names, so the names are defined once, here.
"""

from __future__ import annotations

from dataclasses import dataclass

from .camera import get_sensor
from .catalog import read_header
from .config import resolve_catalogs
from .errors import ConfigError


@dataclass(frozen=True)
class VisitEntry:
    """One visit of a campaign: its number, band and catalog file."""

    visit: int
    band: str
    catalog: str


def visits(catalog_patterns: list[str]) -> dict[int, VisitEntry]:
    """visit -> :class:`VisitEntry` for every catalog (headers only).

    Raises:
        ConfigError: when a pattern matches nothing or two catalogs share a visit number.
        CatalogError: when a header is malformed.
    """
    out: dict[int, VisitEntry] = {}
    for path in resolve_catalogs(catalog_patterns):
        header = read_header(path)
        if header.visit in out:
            raise ConfigError("catalogs", path, f"visit {header.visit} is also in {out[header.visit].catalog}",
                              "one catalog per visit")
        out[header.visit] = VisitEntry(header.visit, header.band, path)
    return dict(sorted(out.items()))


def visit_dir(visit: int) -> str:
    """The 8-digit visit directory name."""
    return f"{int(visit):08d}"


def image_name(visit: int, band: str, det_name: str, snap: int = 0) -> str:
    """imSim's eimage file name: ``eimage_{visit:08d}-{snap}-{band}-{det_name}-det{det_num:03d}.fits``."""
    return f"eimage_{int(visit):08d}-{snap}-{band}-{det_name}-det{get_sensor(det_name).det_num:03d}.fits"


def truth_name(visit: int, band: str, det_name: str, snap: int = 0) -> str:
    """The truth table beside the image (imSim's centroid file, tab-separated)."""
    return image_name(visit, band, det_name, snap).replace("eimage_", "centroid_").replace(".fits", ".txt.gz")
