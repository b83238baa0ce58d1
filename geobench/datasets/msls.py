"""MSLS val's two query sets, as named protocols.

The papers (MixVPR, SALAD, BoQ, MegaLoc) evaluate on 740 val queries: the list shipped with
MixVPR / GSV-Cities (`msls_val_qImages.npy[msls_val_qIdx.npy]`, kept here as
geobench/data/msls_val_740.txt). VPR-datasets-downloader's `format_mapillary.py` instead
moves every non-panoramic query image of the two val cities (cph, sf) into `val/queries`,
thousands of them. `msls_val_740` (the default) keeps the listed queries, matched by the
Mapillary key in the file name's pano field; `msls_val_all` keeps every query. The database
is the same for both (18,871 images).
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from geobench.errors import DataError, UsageError

PROTOCOLS = ("msls_val_740", "msls_val_all")
DEFAULT = "msls_val_740"
LIST_FILE = Path(__file__).resolve().parents[1] / "data" / "msls_val_740.txt"
DATABASE = 18871


@lru_cache(maxsize=1)
def official_keys() -> frozenset[str]:
    """The Mapillary keys of the 740 official val queries."""
    lines = [ln.split() for ln in LIST_FILE.read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    return frozenset(parts[1] for parts in lines)


def check_protocol(name: str, protocol: str | None) -> str | None:
    """The MSLS protocol to prepare (None for other datasets, which take none)."""
    if name != "msls":
        if protocol is not None:
            raise UsageError(f"prepare {name}: --protocol is for msls ({' | '.join(PROTOCOLS)}) "
                             f"and vigor; drop it")
        return None
    protocol = protocol or DEFAULT
    if protocol not in PROTOCOLS:
        raise UsageError(f"prepare msls: protocol {protocol!r} is not one of "
                         f"{' | '.join(PROTOCOLS)} (msls_val_740: the papers' 740 queries; "
                         f"msls_val_all: every query in val/queries)")
    return protocol


def select_queries(rows: list[tuple[str, Any]], folder: Path, protocol: str) -> list[tuple[str, Any]]:
    """The query rows (uid, parsed name) `protocol` evaluates, in their order."""
    if protocol == "msls_val_all":
        return rows
    keys = official_keys()
    kept = [(uid, v) for uid, v in rows if v.pano in keys]
    if not kept:
        raise DataError(f"{folder}: none of its {len(rows)} queries is one of the 740 official "
                        f"MSLS val queries (matched by the Mapillary key in the file name); "
                        f"format MSLS with VPR-datasets-downloader, or prepare with --protocol "
                        f"msls_val_all to evaluate every query")
    return kept


def expected(protocol: str) -> dict[str, int]:
    """Release counts to check: the downloader's query count for all queries is not published."""
    counts = {"val/reference/street": DATABASE}
    if protocol == "msls_val_740":
        counts["val/query/street"] = len(official_keys())
    return counts
