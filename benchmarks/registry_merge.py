"""How long the per-visit merge takes: N record files upserted into a fresh registry in one transaction.

    python benchmarks/registry_merge.py [N ...]      # default 189 (one visit) and 1890
    python benchmarks/registry_merge.py --db postgresql://user@host/db 189

Prints the wall time of the first registration and of a re-registration (upserts of the same rows).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from dc2flow import camera, registry


def fake_records(directory: Path, n: int) -> list[str]:
    paths = []
    for i in range(n):
        visit, det = 1000 + i // len(camera.DET_NAMES), camera.DET_NAMES[i % len(camera.DET_NAMES)]
        rec = {c: None for c in registry.IMAGE_COLUMNS}
        rec.update(record_version=registry.RECORD_VERSION, visit=visit, det_name=det, det_num=i % 189, band="r",
                   path=f"{visit:08d}/eimage_{visit:08d}-0-r-{det}-det{i % 189:03d}.fits", bytes=65_609_280,
                   sha256="0" * 64, datasum="1", checksum="A" * 16, config_hash="3876265cd2d12adf",
                   runtime_s=100.0, max_rss_mb=2000.0, recorded_utc=registry.utc_now())
        path = directory / f"{visit}-{det}.json"
        registry.write_record(path, rec)
        paths.append(str(path))
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("n", nargs="*", type=int, default=[189, 1890])
    ap.add_argument("--db", help="database URL [default: a fresh SQLite file per N]")
    args = ap.parse_args()
    for n in args.n:
        with tempfile.TemporaryDirectory() as tmp:
            records = fake_records(Path(tmp), n)
            url = args.db or f"sqlite:///{tmp}/registry.sqlite"
            t0 = time.perf_counter()
            registry.register(records, url)
            t1 = time.perf_counter()
            registry.register(records, url)
            t2 = time.perf_counter()
            print(f"{n:6d} records: first merge {t1 - t0:.3f} s, re-registration {t2 - t1:.3f} s ({url.split(':')[0]})")


if __name__ == "__main__":
    main()
