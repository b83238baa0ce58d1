"""Options of the synthetic world generator (one frozen dataclass) and per-layout sizes.

Sizes: `resolution="default"` writes images at half the real datasets' sizes with the
same aspect (CVUSA: aerial 256x256 is the size SAFA/TransGeo train on, panorama 112x616
is exactly half of 224x1232; VIGOR: 320 / 256x512; VG: 240x320), which keeps 2,000 CVUSA
pairs under about a minute on two cores with `workers` = 2 (see geobench/bench/synthetic.py;
the bytes written do not depend on `workers`). `resolution="full"` writes the real sizes (CVUSA
750 / 224x1232, VIGOR 640 / 1024x2048, VG 480x640). `aerial_size` / `ground_size`
override either. Ground coverage follows the real data: CVUSA zoom-19 tiles span about
0.23 m/px x 750 px, VIGOR 0.114 m/px x 640 px.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geobench.errors import UsageError

LAYOUTS = ("cvusa", "vigor", "vg")
RESOLUTIONS = ("default", "full")

# layout -> resolution -> (aerial px, (ground H, ground W))
SIZES = {
    "cvusa": {"default": (256, (112, 616)), "full": (750, (224, 1232))},
    "vigor": {"default": (320, (256, 512)), "full": (640, (1024, 2048))},
    "vg": {"default": (0, (240, 320)), "full": (0, (480, 640))},
}
AERIAL_EXTENT_M = {"cvusa": 0.23 * 750, "vigor": 0.114 * 640, "vg": 0.0}
# where the horizon sits in a panorama, as a fraction of its height: CVUSA panoramas are
# the band of rows 176..399 of the 616-row sphere (horizon at 308), VIGOR the full sphere
HORIZON = {"cvusa": (308 - 176) / 224, "vigor": 0.5}


@dataclass(frozen=True)
class SyntheticOptions:
    """What to generate. `out` is the raw root the layout is written into."""

    out: Path
    pairs: int = 1000              # train pairs (cvusa), train panoramas (vigor), train queries (vg)
    test_pairs: int | None = None  # None: the preset's gallery size
    seed: int = 0
    layout: str = "cvusa"
    cities: int = 2
    preset: str = "standard"
    difficulty: Mapping[str, Any] = field(default_factory=dict)  # knob overrides
    resolution: str = "default"
    aerial_size: int | None = None
    ground_size: tuple[int, int] | None = None
    origin_lat: float = 40.0       # tangent plane of city 0; city k sits 0.6 degrees east
    origin_lon: float = -89.0
    camera_height_m: float = 2.0
    annotations: bool = True       # CVUSA: write streetview/annotations/*.png label maps
    vg_crops: int = 4              # VG: database crops per place (evenly spaced headings)
    vg_hfov_deg: float = 90.0
    overwrite: bool = False
    workers: int | None = None     # rendering processes; None: one per core, 0: none (in this
                                   # process), as everywhere in geobench (same bytes for any)

    def __post_init__(self) -> None:
        object.__setattr__(self, "out", Path(self.out))
        object.__setattr__(self, "difficulty", dict(self.difficulty))
        if self.layout not in LAYOUTS:
            raise UsageError(f"unknown synthetic layout {self.layout!r}; choose one of "
                             f"{', '.join(LAYOUTS)}")
        if self.resolution not in RESOLUTIONS:
            raise UsageError(f"resolution {self.resolution!r} must be one of "
                             f"{', '.join(RESOLUTIONS)}")
        if int(self.pairs) < 1:
            raise UsageError(f"--pairs {self.pairs} must be at least 1")
        if self.test_pairs is not None and int(self.test_pairs) < 1:
            raise UsageError(f"--test-pairs {self.test_pairs} must be at least 1")
        if not 1 <= int(self.cities) <= 64:
            raise UsageError(f"--cities {self.cities} must lie in 1..64")
        if not -70 <= self.origin_lat <= 70 or not -180 <= self.origin_lon < 180:
            raise UsageError(f"origin {self.origin_lat}, {self.origin_lon} must lie within "
                             f"latitude [-70, 70] and longitude [-180, 180)")
        if not 0.5 <= self.camera_height_m <= 10:
            raise UsageError(f"camera height {self.camera_height_m} m must lie in [0.5, 10]")
        if self.aerial_size is not None and not 16 <= self.aerial_size <= 4096:
            raise UsageError(f"aerial size {self.aerial_size} must lie in 16..4096")
        if self.ground_size is not None and (len(self.ground_size) != 2 or
                                             min(self.ground_size) < 8):
            raise UsageError(f"ground size {self.ground_size} must be (height, width) >= 8")
        if self.workers is not None and not 0 <= int(self.workers) <= 256:
            raise UsageError(f"--workers {self.workers} must lie in 0..256 (0: no worker "
                             f"processes; leave it out for one per core)")
        if not 1 <= self.vg_crops <= 36 or not 10 <= self.vg_hfov_deg <= 170:
            raise UsageError("vg_crops must lie in 1..36 and vg_hfov_deg in [10, 170]")

    @property
    def sizes(self) -> tuple[int, tuple[int, int]]:
        aerial, ground = SIZES[self.layout][self.resolution]
        if self.aerial_size is not None:
            aerial = int(self.aerial_size)
        if self.ground_size is not None:
            ground = (int(self.ground_size[0]), int(self.ground_size[1]))
        return aerial, ground

    @property
    def raster_res(self) -> float:
        """World raster cell (m): about the aerial ground sample distance, within [0.2, 0.5]."""
        aerial, ground = self.sizes
        if self.layout == "vg":
            return 0.25 if ground[1] > 400 else 0.35
        gsd = AERIAL_EXTENT_M[self.layout] / aerial
        return float(min(0.5, max(0.2, gsd)))
