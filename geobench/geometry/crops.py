"""Limited field-of-view crops of panoramas: shifted strips and pinhole (perspective) views.

Panorama convention (CVUSA, VIGOR, the synthetic world; reference/datasets.md §1.1, §7):
column c of a width-W panorama faces heading 360 c / W - 180 relative to the panorama's
centre column, which faces the panorama's own heading (north for north-aligned panoramas).
Row centres of a full 2:1 equirectangular image lie at elevation 90 - (r + 1/2) 180 / H.

`shift` (DSM / TransGeo limited FOV): roll right by `shift` columns, keep the leftmost
int(FOV/360 W); the crop centre faces 360 (w/2 - shift) / W - 180.
`perspective`: a true pinhole camera (f = W_out / (2 tan(hfov/2)), principal point at the
image centre) turned by yaw (clockwise) and pitch (up), sampled bilinearly with wrap-around
at the seam. Panoramas narrower than 2:1 (CVUSA's 224x1232 is a vertical band of a
616-row sphere) are padded back to 2:1 first: by default the band is centred on the
horizon (`pad="center"`); `pad_offset` moves the band centre by a fraction of the full
height (positive = down), e.g. -20/616 for HC-Net's CVUSA rule; `pad="none"` refuses them.
"""
from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from geobench.errors import DataError, UsageError

MODES = ("shift", "perspective")
PADS = ("center", "none")
FORMATS = ("jpg", "png")


@dataclass(frozen=True)
class CropParams:
    """Everything that decides a crop run; recorded in crops.json beside the outputs.

    yaw None = random (seeded per source image), else the first crop's yaw in degrees
    relative to the panorama centre; with per_image K the K yaws are spaced 360/K apart.
    size: shift mode resizes the panorama to HxW before cropping (as DSM does); perspective
    mode renders HxW images (default: square, native angular resolution).
    """

    fov: float
    mode: str = "shift"
    yaw: float | None = None
    pitch: float = 0.0
    size: tuple[int, int] | None = None
    per_image: int = 1
    seed: int = 0
    pad: str = "center"
    pad_offset: float = 0.0
    format: str = "jpg"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise UsageError(f"--mode {self.mode!r} is not one of {' | '.join(MODES)}")
        hi = 360.0 if self.mode == "shift" else 179.0
        if not 0 < self.fov <= hi:
            raise UsageError(f"--fov {self.fov} must be in (0, {hi:g}] degrees for "
                             f"{self.mode} crops")
        if not -90.0 <= self.pitch <= 90.0:
            raise UsageError(f"--pitch {self.pitch} must be in [-90, 90] degrees")
        if self.mode == "shift" and self.pitch != 0:
            raise UsageError("--pitch needs --mode perspective (shift crops keep the full "
                             "vertical extent)")
        if self.per_image < 1:
            raise UsageError(f"--per-image {self.per_image} must be at least 1")
        if self.size is not None:
            h, w = self.size
            if h < 1 or w < 1:
                raise UsageError(f"--size {h}x{w} must be positive")
            object.__setattr__(self, "size", (int(h), int(w)))
        if self.pad not in PADS:
            raise UsageError(f"pad {self.pad!r} is not one of {' | '.join(PADS)}")
        if self.format not in FORMATS:
            raise UsageError(f"format {self.format!r} is not one of {' | '.join(FORMATS)}")

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["size"] = list(self.size) if self.size else None
        return data


def crop_rng(seed: int, key: str) -> np.random.Generator:
    """Per-source generator: the same seed gives the same crops in any order or worker."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(key.encode("utf-8"))])


def crop_yaws(params: CropParams, key: str) -> np.ndarray:
    """Yaws (degrees, relative to the panorama centre) of the crops of one source."""
    k = params.per_image
    if params.yaw is None:
        return crop_rng(params.seed, key).uniform(0.0, 360.0, size=k)
    return (params.yaw + 360.0 * np.arange(k) / k) % 360.0


def wrap180(deg: Any) -> Any:
    return (np.asarray(deg, dtype=float) + 180.0) % 360.0 - 180.0


# --------------------------------------------------------------------------- shift


def shift_crop(pano: np.ndarray, fov: float, shift: int) -> tuple[np.ndarray, float]:
    """Roll right by `shift` columns, keep int(fov/360 W); return (crop, centre yaw)."""
    W = pano.shape[1]
    w = int(fov / 360.0 * W)
    if w < 1:
        raise DataError(f"a {fov} degree crop of a {W}-column panorama is empty; use a wider "
                        f"--fov or a larger --size")
    cols = (np.arange(w) - shift) % W
    yaw = float(wrap180(360.0 * (w / 2.0 - shift) / W - 180.0))
    return np.ascontiguousarray(pano[:, cols]), yaw


def shift_for_yaw(yaw: float, fov: float, W: int) -> int:
    """The integer roll that puts the crop centre closest to `yaw`."""
    w = int(fov / 360.0 * W)
    centre_col = (yaw + 180.0) / 360.0 * W
    return int(np.round(w / 2.0 - centre_col)) % W


# --------------------------------------------------------------------------- perspective


def perspective_size(params: CropParams, pano_width: int) -> tuple[int, int]:
    if params.size is not None:
        return params.size
    side = max(16, int(round(params.fov / 360.0 * pano_width)))
    return side, side


def band_top(pano_h: int, pano_w: int, pad: str, pad_offset: float, source: str = "") -> float:
    """Row of the full 2:1 sphere at which the panorama's first row sits."""
    full = pano_w / 2.0
    if pano_h > full + 0.5:
        raise DataError(f"{source}: panorama is {pano_h}x{pano_w}, taller than 2:1; "
                        f"perspective crops need an equirectangular panorama (W = 2H) or a "
                        f"vertical band of one")
    if abs(pano_h - full) <= 0.5:
        return 0.0
    if pad == "none":
        raise DataError(f"{source}: panorama is {pano_h}x{pano_w}, not 2:1; it is a vertical "
                        f"band of a sphere: allow padding (pad='center') to project it")
    return (full - pano_h) / 2.0 + pad_offset * full


def perspective_maps(pano_h: int, pano_w: int, out_hw: tuple[int, int], fov: float,
                     yaw: float, pitch: float, top: float) -> tuple[np.ndarray, np.ndarray]:
    """Float64 panorama (col, row) for each output pixel (col may exceed W: wrap it)."""
    H, W = out_hw
    f = 0.5 * W / np.tan(np.radians(fov) / 2.0)
    x = (np.arange(W, dtype=np.float64)[None, :] - (W - 1) / 2.0) / f
    y = (np.arange(H, dtype=np.float64)[:, None] - (H - 1) / 2.0) / f
    ps, pc = np.sin(np.radians(pitch)), np.cos(np.radians(pitch))
    ys, yc = np.sin(np.radians(yaw)), np.cos(np.radians(yaw))
    # camera axes in (east, north, up) with "north" = the panorama's centre direction
    fwd = np.array([ys * pc, yc * pc, ps])
    right = np.array([yc, -ys, 0.0])
    up = np.cross(right, fwd)
    d = x[..., None] * right - y[..., None] * up + fwd  # (H, W, 3)
    heading = np.degrees(np.arctan2(d[..., 0], d[..., 1]))
    elevation = np.degrees(np.arctan2(d[..., 2], np.hypot(d[..., 0], d[..., 1])))
    col = ((heading + 180.0) / 360.0 * pano_w) % pano_w
    row = (90.0 - elevation) / 180.0 * (pano_w / 2.0) - 0.5 - top
    return col, row


def perspective_crop(pano: np.ndarray, fov: float, yaw: float, pitch: float = 0.0,
                     out_hw: tuple[int, int] = (256, 256), pad: str = "center",
                     pad_offset: float = 0.0, source: str = "") -> np.ndarray:
    """Render one pinhole view of an equirectangular panorama (or a padded band of one)."""
    import cv2

    h, w = pano.shape[:2]
    top = band_top(h, w, pad, pad_offset, source)
    col, row = perspective_maps(h, w, out_hw, fov, yaw, pitch, top)
    # One wrapped column on each side makes bilinear sampling seamless across the seam.
    padded = np.concatenate([pano[:, -1:], pano, pano[:, :1]], axis=1)
    border = cv2.BORDER_REPLICATE if top == 0.0 else cv2.BORDER_CONSTANT
    return cv2.remap(padded, (col + 1.0).astype(np.float32), row.astype(np.float32),
                     interpolation=cv2.INTER_LINEAR, borderMode=border, borderValue=0)


# --------------------------------------------------------------------------- runner entry


def crop_image(pano: np.ndarray, params: CropParams, job: Any) -> list[tuple[np.ndarray, dict]]:
    """Worker entry: every crop of one panorama with its parameters (yaw relative)."""
    import cv2

    key = getattr(job, "key", "") or ""
    source = getattr(job, "src", "")
    out = []
    if params.mode == "shift":
        if params.size is not None:
            pano = cv2.resize(pano, (params.size[1], params.size[0]),
                              interpolation=cv2.INTER_AREA)
        W = pano.shape[1]
        if params.yaw is None:
            rng = crop_rng(params.seed, key)
            shifts = [int(v) for v in rng.integers(0, W, size=params.per_image)]
        else:
            shifts = [shift_for_yaw(y, params.fov, W) for y in crop_yaws(params, key)]
        for s in shifts:
            crop, yaw = shift_crop(pano, params.fov, s)
            out.append((crop, {"yaw": yaw, "pitch": 0.0,
                               "fov": 360.0 * crop.shape[1] / W, "shift": s}))
        return out
    out_hw = perspective_size(params, pano.shape[1])
    for yaw in crop_yaws(params, key):
        crop = perspective_crop(pano, params.fov, float(yaw), params.pitch, out_hw,
                                params.pad, params.pad_offset, source)
        out.append((crop, {"yaw": float(wrap180(yaw)), "pitch": params.pitch,
                           "fov": params.fov, "shift": ""}))
    return out
