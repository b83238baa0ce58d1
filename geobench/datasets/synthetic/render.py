"""Cameras: vectorised heightfield ray casting (panoramas, pinhole crops) and nadir aerials.

Ground views: every image column is one compass azimuth, every pixel one elevation. Rays
march outward along the column's azimuth over distances that grow with range (about one
pixel of angle per step); the running maximum of (height - camera)/distance along the
ray is non-decreasing, so the first sample that hides a pixel is found for all pixels
of all columns with one flat `searchsorted`. Tree crowns start at the camera height, so
for rays below the horizon they are transparent (a second running maximum without them).
"""
from __future__ import annotations

import functools

import numpy as np

from geobench.datasets.synthetic.world import (
    BUILDING,
    CANOPY,
    GRASS,
    GROUND,
    MARKING,
    PLAZA,
    ROAD,
    SIDEWALK,
    TRUNK,
    VEHICLE,
    GroundCapture,
    tile_index,
    untile,
    value_noise,
)

# label ids of the annotation PNGs (written beside CVUSA panoramas)
LABELS = {"sky": 0, "building": 1, "road": 2, "sidewalk": 3, "grass": 4, "tree": 5,
          "vehicle": 6, "plaza": 7}
_MAT_LABEL = np.zeros(16, np.uint8)
for _m, _l in ((GRASS, 4), (ROAD, 2), (SIDEWALK, 3), (MARKING, 2), (PLAZA, 7), (CANOPY, 5),
               (TRUNK, 5), (BUILDING, 1), (VEHICLE, 6)):
    _MAT_LABEL[_m] = _l
_LIM, _OFF = 1.0e3, 4.0e3
_GROUNDISH = np.zeros(16, bool)   # what rays below the horizon see as ground
_GROUNDISH[list(GROUND) + [CANOPY]] = True


@functools.lru_cache(maxsize=32)
def march_steps(width: int, res: float, far: float) -> np.ndarray:
    ang = 2 * np.pi / width
    steps = [0.3]
    while steps[-1] < far:
        steps.append(steps[-1] + max(res, steps[-1] * ang))
    return np.array(steps)


def pano_rays(H: int, W: int, horizon: float, heading_deg: float = 0.0):
    """Azimuths (W,) and tan(elevation) (H, 1) of an equirectangular panorama.

    Column c faces heading_deg + 360*c/W - 180 (north at the centre column for heading 0);
    square pixels; the horizon lies `horizon`*H rows from the top.
    """
    az = np.radians(heading_deg + 360.0 * np.arange(W) / W - 180.0)
    el = (horizon * H - (np.arange(H) + 0.5)) * (2 * np.pi / W)
    return az, np.tan(np.clip(el, -1.5707, 1.5707))[:, None]


def pinhole_rays(H: int, W: int, hfov_deg: float, heading_deg: float):
    """Azimuths (W,) and tan(elevation) (H, W) of a level pinhole camera."""
    f = (W / 2) / np.tan(np.radians(hfov_deg) / 2)
    u = (np.arange(W) + 0.5 - W / 2) / f
    v = (H / 2 - (np.arange(H) + 0.5)) / f
    az = np.radians(heading_deg) + np.arctan(u)
    return az, v[:, None] / np.sqrt(1 + u[None, :] ** 2)


def _first_hit(cm: np.ndarray, tan_el: np.ndarray, cols: np.ndarray) -> np.ndarray:
    S = cm.shape[1]
    keys = (np.clip(cm, -_LIM, _LIM) + _OFF * np.arange(cm.shape[0])[:, None]).ravel()
    q = np.clip(tan_el, -_LIM + 1, _LIM - 1) + _OFF * cols
    return np.searchsorted(keys, q, side="left") - cols * S


def _hits_shared(cm: np.ndarray, t: np.ndarray) -> np.ndarray:
    """First step k with cm[c, k] >= t[r] (S where none) for every column c and row r,
    when all columns share the ascending thresholds t (R,) (panoramas): each step covers
    the rows whose threshold its running maximum newly passes, so one np.repeat lays
    out all answers with no search per pixel. Returns (W, R)."""
    W, S = cm.shape
    cnt = np.searchsorted(t, cm.ravel(), side="right").reshape(W, S)
    per = np.empty_like(cnt)
    per[:, 0] = cnt[:, 0]
    np.subtract(cnt[:, 1:], cnt[:, :-1], out=per[:, 1:])
    out = np.full((W, t.size), S, np.int64)
    out[np.arange(t.size)[None, :] < cnt[:, -1:]] = np.repeat(
        np.broadcast_to(np.arange(S), (W, S)).ravel(), per.ravel())
    return out


def _hash01(x: np.ndarray) -> np.ndarray:
    return ((x.astype(np.uint32) * np.uint32(2654435761)) >> np.uint32(20)).astype(
        np.float32) * np.float32(1 / 4095.0)


def cast(cap: GroundCapture, x: float, y: float, az: np.ndarray, tan_el: np.ndarray,
         rng: np.random.Generator, far: float = 250.0):
    """Render (rgb uint8 (H,W,3), labels uint8 (H,W)) from camera (x, y, cap.z0)."""
    W = az.size
    H = tan_el.shape[0]
    shared = None
    if tan_el.shape[1] == 1 and np.all(np.diff(tan_el[:, 0]) <= 0):
        shared = tan_el[:, 0]
    tan_el = np.broadcast_to(tan_el, (H, W))
    res, sy = cap.res, cap.size[1]
    nr, nc = cap.shape
    s = march_steps(W, res, far)
    dx, dy = np.sin(az), np.cos(az)
    # the raster's outer ring is flat grass, so clipping stands for "outside the town"
    sr = (s / res).astype(np.float32)
    col = (np.float32(x / res) + dx.astype(np.float32)[:, None] * sr).astype(np.int32)
    row = (np.float32((sy - y) / res) - dy.astype(np.float32)[:, None] * sr).astype(np.int32)
    np.clip(col, 0, nc - 1, out=col)
    np.clip(row, 0, nr - 1, out=row)
    flat = tile_index(row, col, nc)
    del row, col
    rel = cap.rel[flat]          # (W, S) complex: height - z0, all + 1j * solid
    rel *= (1.0 / s).astype(np.float32)[None, :]
    cm_all = np.maximum.accumulate(rel.real, axis=1)
    cm_solid = np.maximum.accumulate(rel.imag, axis=1)
    up = (tan_el >= 0).ravel()
    cols = np.broadcast_to(np.arange(W), (H, W)).ravel()
    q = tan_el.ravel().astype(np.float32)
    if shared is not None:   # panorama rows: one threshold per row, descending
        n_up = int((shared >= 0).sum())   # the top rows
        t = shared[::-1].astype(np.float32)
        k = np.empty((H, W), np.int64)
        k[:n_up] = _hits_shared(cm_all, t[H - n_up:])[:, ::-1].T
        k[n_up:] = _hits_shared(cm_solid, t[:H - n_up])[:, ::-1].T
        k = k.ravel()
    else:
        k = np.empty(H * W, np.int64)
        k[up] = _first_hit(cm_all, q[up], cols[up])
        k[~up] = _first_hit(cm_solid, q[~up], cols[~up])
    return _shade(cap, x, y, az, q, cols, k, flat.ravel(), s, rng, (H, W))


def _shade(cap: GroundCapture, x: float, y: float, az: np.ndarray, q: np.ndarray,
           cols: np.ndarray, k: np.ndarray, flat: np.ndarray, s: np.ndarray,
           rng: np.random.Generator, shape: tuple[int, int]):
    """Colour and label every pixel from its first hit (step k along its column's ray).

    Works on index arrays of the pixels of each kind (ground, walls, roofs, crowns,
    trunks, far ground, sky), so every pixel is touched once per quantity it needs.
    """
    H, W = shape
    S = s.size
    z0, res, sy = cap.z0, cap.res, cap.size[1]
    nr, nc = cap.shape
    dx, dy = np.sin(az).astype(np.float32), np.cos(az).astype(np.float32)
    sun = cap.sun.vector().astype(np.float32)
    hit = k < S
    hi = np.flatnonzero(hit)
    ch, kh = cols[hi], k[hi]
    fh = flat[ch * S + kh]
    mh = cap.mat[fh]
    qh = q[hi]
    sh = s.astype(np.float32)[kh]
    below = qh < 0
    colour = np.zeros((hi.size, 3), np.float32)
    labh = _MAT_LABEL[mh]
    # ground (also the ground under tree crowns, which rays below the horizon pass)
    g = np.flatnonzero(below & _GROUNDISH[mh])
    sg = z0 / np.maximum(-qh[g], np.float32(1e-6))
    gc = np.clip(((x + dx[ch[g]] * sg) / res).astype(np.int64), 0, nc - 1)
    gr = np.clip(((sy - y - dy[ch[g]] * sg) / res).astype(np.int64), 0, nr - 1)
    gf = gr * nc + gc
    colour[g] = cap.ground_rgb[gf].view(np.uint8).reshape(-1, 4)[:, :3]
    labh[g] = _MAT_LABEL[cap.gmat.ravel()[gf]]
    # walls of buildings and car bodies: face normal from the cell boundary the ray crossed
    si = np.flatnonzero((mh == BUILDING) | (mh == VEHICLE))
    h_s = cap.rel[fh[si]].real + z0
    z_s = z0 + sh[si] * qh[si]
    is_roof = (mh[si] == VEHICLE) & (z_s >= h_s)
    ri = si[is_roof]
    colour[ri] = cap.roof[cap.obj[fh[ri]]] * (0.6 + 0.5 * sun[2])
    keep = ~is_roof
    wi, h_w, z_w = si[keep], h_s[keep], z_s[keep]
    cw = ch[wi]
    fp = flat[cw * S + np.maximum(kh[wi] - 1, 0)]
    (r1, c1), (r0, c0) = untile(fh[wi], nc), untile(fp, nc)
    dcol, drow = c1 - c0, r1 - r0
    dxw, dyw = dx[cw], dy[cw]
    nx = np.where(dcol != 0, -np.sign(dcol), np.where(drow != 0, 0, -dxw)).astype(np.float32)
    ny = np.where(dcol != 0, 0, np.where(drow != 0, np.sign(drow), -dyw)).astype(np.float32)
    light = 0.45 + 0.7 * np.maximum(0.0, nx * sun[0] + ny * sun[1])
    wall = cap.wall[cap.obj[fh[wi]]] * light[:, None]
    sw = sh[wi]
    u = np.where(nx != 0, y + dyw * sw, x + dxw * sw)
    fu, fv = (u / 3.0) % 1.0, ((z_w - 0.5) / 3.2) % 1.0
    ww, wf = cap.window
    win = np.flatnonzero((mh[wi] == BUILDING) & (fu < ww) & (fv > 0.3) & (fv < 0.3 + wf)
                         & (z_w > 1.2) & (z_w < h_w - 0.6))
    wall[win] = wall[win] * 0.25 + np.array([45, 60, 80], np.float32) * light[win, None]
    colour[wi] = wall
    # tree crowns and trunks
    tree = (mh == CANOPY) | (mh == TRUNK)
    cr = np.flatnonzero(~below & tree)
    colour[cr] = cap.wall[cap.obj[fh[cr]]] * (0.55 + 0.45 * sun[2]) * \
        (0.75 + 0.5 * _hash01(fh[cr]))[:, None]
    colour[below & (mh == TRUNK)] = np.array([85, 65, 45], np.float32)
    # distance haze towards the horizon colour
    horizon = np.array([200, 210, 225], np.float32)
    haze = (1.0 - np.exp(sh * np.float32(-1 / 700.0)))[:, None]
    colour *= 1 - haze
    colour += horizon * haze
    rgb = np.empty((H * W, 3), np.float32)
    label = np.empty(H * W, np.uint8)
    rgb[hi] = colour
    label[hi] = labh
    # rays that leave the town: far ground below the horizon, sky above it
    ni = np.flatnonzero(~hit)
    qn = q[ni]
    far, sky = ni[qn < 0], ni[qn >= 0]
    rgb[far] = horizon * 0.8 + cap.ground_rgb[:1].view(np.uint8)[:3].astype(np.float32) * 0.2
    label[far] = LABELS["grass"]
    zenith = np.array([70, 120, 200], np.float32) * rng.uniform(0.85, 1.1, 3).astype(np.float32)
    el = np.arctan(qn[qn >= 0])
    t = np.sqrt(np.clip(el / (np.pi / 2), 0, 1))[:, None]
    sky_rgb = horizon * (1 - t) + zenith * t
    cos_sun = sun[2] * np.sin(el) + np.sqrt(1 - sun[2] ** 2) * np.cos(el) * np.cos(
        az[cols[sky]] - cap.sun.az)
    sky_rgb += 70.0 * np.exp((cos_sun - 1) * 25)[:, None]
    clouds = value_noise((H, W), rng, scales=(max(2, W // 16), max(2, W // 64)), amp=0.5)
    cl = np.clip((clouds.ravel()[sky] - 1.05) * 3, 0, 0.8)[:, None]
    rgb[sky] = sky_rgb * (1 - cl) + 235.0 * cl
    label[sky] = LABELS["sky"]
    return (np.clip(rgb, 0, 255).astype(np.uint8).reshape(H, W, 3), label.reshape(H, W))


def render_aerial(top_rgb: np.ndarray, res: float, size: tuple[float, float], cx: float,
                  cy: float, extent: float, N: int) -> np.ndarray:
    """North-up orthographic nadir image of `extent` metres, N×N px, centred on (cx, cy).

    Pixel (i, j) shows x = cx + (j - N/2)g, y = cy - (i - N/2)g with g = extent/N, so the
    centre (cx, cy) falls on index (N/2, N/2), the centre the SAFA polar transform uses.
    """
    import cv2

    g = extent / N
    over = max(1, int(np.ceil(g / res / 1.25)))
    n2, g2 = N * over, g / over
    sy = size[1]
    # cv2 puts pixel centres on integers (source index = metres/res - 0.5); fine pixel J of
    # the oversampled grid sits so that each block of `over` averages to its coarse pixel.
    shift = (N / 2) * over + (over - 1) / 2
    m = np.array([[g2 / res, 0.0, (cx - shift * g2) / res - 0.5],
                  [0.0, g2 / res, (sy - cy - shift * g2) / res - 0.5]])
    out = cv2.warpAffine(top_rgb, m, (n2, n2), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                         borderMode=cv2.BORDER_REPLICATE)
    if over > 1:
        out = cv2.resize(out, (N, N), interpolation=cv2.INTER_AREA)
    return out
