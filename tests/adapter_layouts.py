"""Tiny copies of the real raw dataset layouts (real file names, split formats, images)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def image(path: Path, h: int = 8, w: int = 16, value: int = 100) -> Path:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.full((h, w, 3), value, np.uint8)
    img[: h // 2, : w // 2] = 255 - value
    assert cv2.imwrite(str(path), img)
    return path


def cvusa(root: Path, n_train: int = 3, n_test: int = 2, doubled: bool = False,
          crlf: bool = False, aerial_size: int = 16) -> Path:
    """CVUSA/ with splits/{train,val}-19zl.csv; `doubled` mimics bingmap/bingmap/19 etc."""
    pre = {"bingmap": "bingmap/bingmap" if doubled else "bingmap",
           "streetview": "streetview/streetview" if doubled else "streetview",
           "splits": "splits/splits" if doubled else "splits"}
    end = "\r\n" if crlf else "\n"
    ids = iter(range(1, n_train + n_test + 1))
    for name, n in (("train-19zl.csv", n_train), ("val-19zl.csv", n_test)):
        lines = []
        for _ in range(n):
            i = f"{next(ids):07d}"
            lines.append(f"bingmap/19/{i}.jpg,streetview/panos/{i}.jpg,"
                         f"streetview/annotations/{i}.png")
            image(root / pre["bingmap"] / "19" / f"{i}.jpg", aerial_size, aerial_size)
            image(root / pre["streetview"] / "panos" / f"{i}.jpg", 8, 32)
            image(root / pre["streetview"] / "annotations" / f"{i}.png", 8, 32)
        path = root / pre["splits"] / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes((end.join(lines) + end).encode())
    return root


SAT_DLAT, SAT_DLON = 0.00032807, 0.00044059


def vigor_sat(lat: float, lon: float) -> str:
    return f"satellite_{lat}_{lon}.png"


def vigor(root: Path, cities: dict[str, tuple[float, float]] | None = None, n_panos: int = 4,
          corrected: bool = False, trailing_newline: bool = False) -> Path:
    """VIGOR/<City>/{panorama,satellite} + splits/<City>/ label files (13-field lines).

    Satellites form a 3x3 half-overlapping grid; each pano lies near the centre tile.
    """
    cities = cities or {"Chicago": (41.8779, -87.6894), "NewYork": (40.7309, -73.9953)}
    split_dir = root / ("splits__corrected" if corrected else "splits")
    suffix = "__corrected" if corrected else ""
    for c, (lat0, lon0) in cities.items():
        grid = {(r, k): (lat0 + r * SAT_DLAT, lon0 + k * SAT_DLON) for r in (-1, 0, 1)
                for k in (-1, 0, 1)}
        names = {key: vigor_sat(*ll) for key, ll in grid.items()}
        for name in names.values():
            image(root / c / "satellite" / name, 16, 16)
        lines = []
        for p in range(n_panos):
            # the pano sits slightly south-east of the centre tile's centre
            lat, lon = lat0 - 0.00001 * (p + 1), lon0 + 0.00002 * (p + 1)
            pano = f"pano{c[:2]}-{p}_x,{lat:.6f},{lon:.6f},.jpg"
            image(root / c / "panorama" / pano, 8, 16)
            fields = [pano]
            for key in ((0, 0), (0, 1), (-1, 0), (-1, 1)):
                s_lat, s_lon = grid[key]
                d0 = (s_lat - lat) / SAT_DLAT * 320
                d1 = (s_lon - lon) / SAT_DLON * 320
                fields += [names[key], f"{d0:.1f}", f"{d1:.1f}"]
            lines.append(" ".join(fields))
        d = split_dir / c
        d.mkdir(parents=True, exist_ok=True)
        end = "\n" if trailing_newline else ""
        (d / "satellite_list.txt").write_text("\n".join(names.values()) + end)
        half = n_panos // 2
        (d / f"same_area_balanced_train{suffix}.txt").write_text("\n".join(lines[:half]) + end)
        (d / f"same_area_balanced_test{suffix}.txt").write_text("\n".join(lines[half:]) + end)
        (d / f"pano_label_balanced{suffix}.txt").write_text("\n".join(lines) + end)
    return root


def vg_name(east: float, north: float, lat: float, lon: float, heading: int | None = None,
            zone: str = "17", letter: str = "T", pano: str = "pano") -> str:
    h = "" if heading is None else f"{heading:03d}"
    return (f"@{east:010.2f}@{north:010.2f}@{zone}@{letter}@{lat:09.5f}@{lon:010.5f}@{pano}"
            f"@@{h}@@@@201708@@.jpg")


def vg(root: Path, splits: tuple[str, ...] = ("test",), queries_folder: str = "queries",
       n_db: int = 6, n_q: int = 3, spacing: float = 8.0) -> Path:
    """<name>/images/<split>/{database,<queries>}/ with @-separated names along a street."""
    for split in splits:
        for i in range(n_db):
            e, n = 584000.0 + spacing * i, 4477000.0
            image(root / "images" / split / "database" / vg_name(e, n, 40.44, -79.99, 30 * i,
                                                                 pano=f"db{i}"))
        for j in range(n_q):
            e, n = 584000.0 + spacing * 2 * j + 1.0, 4477000.0 + 2.0
            image(root / "images" / split / queries_folder / vg_name(e, n, 40.44, -79.99,
                                                                     pano=f"q{j}"))
    return root


CVACT_IDS = ["AbC-de_0123456789xyz_A", "q7-Hh_Zz0011223344556B", "--aa__bb11cc22dd33ee4C",
             "Zz9_8-7x6w5v4u3t2s1r0D", "pP0oO9iI8uU7yY6tT5rR4E", "mM_nN-bB_vV-cC_xX-zZ5F",
             "lL1kK2jJ3hH4gG5fF6dD7G", "sS8aA9qQ0wW1eE2rR3tT4H"]


def act_mat(path: Path, ids: list[str], utm: np.ndarray, sets: dict[str, list[int]],
            version: str = "v5", cell: bool = True) -> Path:
    """ACT_data.mat with panoIds, utm (N×2) and 1-based trainSet/valSet/valSetAll structs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    structs = {"trainSet": "trainInd", "valSet": "valInd", "valSetAll": "valInd"}
    if version == "v5":
        from scipy.io import savemat

        names = np.array(ids, dtype=object).reshape(-1, 1) if cell else np.array(ids)
        mat = {"panoIds": names, "utm": np.asarray(utm, float)}
        for struct, inds in sets.items():
            mat[struct] = {structs[struct]: np.asarray(inds, float).reshape(-1, 1)}
        savemat(str(path), mat)
        return path
    import h5py

    with h5py.File(path, "w", userblock_size=512) as f:
        refs = f.create_group("#refs#")
        if cell:
            ref_dtype = h5py.special_dtype(ref=h5py.Reference)
            ds = f.create_dataset("panoIds", (1, len(ids)), dtype=ref_dtype)
            for k, s in enumerate(ids):
                item = refs.create_dataset(f"s{k}", data=np.array([[ord(c)] for c in s],
                                                                    np.uint16).T)
                ds[0, k] = item.ref
        else:
            f.create_dataset("panoIds", data=np.array([[ord(c) for c in s] for s in ids],
                                                      np.uint16).T)
        f.create_dataset("utm", data=np.asarray(utm, float).T)
        for struct, inds in sets.items():
            f.create_group(struct).create_dataset(structs[struct],
                                                  data=np.asarray(inds, float).reshape(1, -1))
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5"
    with open(path, "r+b") as handle:
        handle.write(header.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02IM")
    return path


def cvact(root: Path, version: str = "v5", mat_in: str = ".", cell: bool = True) -> Path:
    """CVACT/ with ANU_data_small (train 0-3, val 4-5) and ANU_data_test (ids 4-7; 6 and 7
    lie 3 m apart so each is the other's 5 m positive)."""
    utm = np.array([[690000.0 + 100 * k, 6090000.0 + 50 * k] for k in range(8)])
    utm[7] = utm[6] + [3.0, 0.0]
    sets = {"trainSet": [1, 2, 3, 4], "valSet": [5, 6], "valSetAll": [5, 6, 7, 8]}
    act_mat(root / mat_in / "ACT_data.mat", CVACT_IDS, utm, sets, version, cell)
    for sub, ks in (("ANU_data_small", range(0, 6)), ("ANU_data_test", range(4, 8))):
        for k in ks:
            pid = CVACT_IDS[k]
            image(root / sub / "streetview" / f"{pid}_grdView.jpg", 8, 16)
            image(root / sub / "satview_polish" / f"{pid}_satView_polish.jpg", 12, 12)
    return root


def university1652(root: Path) -> Path:
    """University-Release/ with train and test folders; building 0000 included, an empty
    google folder, and gallery building 0099 that no query shows (a distractor)."""
    for b in ("0000", "0001"):
        for k in (1, 2):
            image(root / "train/drone" / b / f"image-{k:02d}.jpeg")
        image(root / "train/satellite" / b / f"{b}.jpg")
        image(root / "train/street" / b / f"{b}-1.jpg")
    (root / "train/google/0001").mkdir(parents=True)
    image(root / "train/google/0000/0000-g.jpg")
    for b in ("0002", "0003"):
        for k in (1, 2, 3):
            image(root / "test/query_drone" / b / f"image-{k:02d}.jpeg")
            image(root / "test/gallery_drone" / b / f"image-{k:02d}.jpeg")
        image(root / "test/query_satellite" / b / f"{b}.jpg")
        image(root / "test/gallery_satellite" / b / f"{b}.jpg")
        image(root / "test/query_street" / b / f"{b}-s.jpg")
        image(root / "test/gallery_street" / b / f"{b}-s.jpg")
    image(root / "test/gallery_satellite/0099/0099.jpg")
    image(root / "test/gallery_drone/0099/image-01.jpeg")
    (root / "test/query_street/0004").mkdir(parents=True)
    return root


DB_STRUCT_FIELDS = ("whichSet", "dbImageFns", "utmDb", "qImageFns", "utmQ", "numDb", "numQ",
                    "posDistThr", "posDistSqThr", "nonTrivPosDistSqThr")


def cell(strings: list[str]) -> np.ndarray:
    """A MATLAB cell column of strings, as scipy.io.savemat writes it."""
    out = np.empty((len(strings), 1), dtype=object)
    for k, s in enumerate(strings):
        out[k, 0] = s
    return out


def pitts_mat(path: Path, which: str, db: list[str], db_utm: np.ndarray, q: list[str],
              q_utm: np.ndarray, names: tuple[str, ...] = DB_STRUCT_FIELDS,
              num_db: int | None = None) -> Path:
    """A NetVLAD dbStruct: loadmat(path)["dbStruct"].item() is the field tuple."""
    from scipy.io import savemat

    path.parent.mkdir(parents=True, exist_ok=True)
    struct = np.empty((1, 1), dtype=[(n, object) for n in names])
    values = (which, cell(db), np.asarray(db_utm, float).T, cell(q), np.asarray(q_utm, float).T,
              float(len(db) if num_db is None else num_db), float(len(q)), 25.0, 625.0, 100.0)
    struct[0, 0] = values[: len(names)]  # fewer names: a truncated struct
    savemat(str(path), {"dbStruct": struct})
    return path


def pitts_raw(root: Path, name: str = "pitts30k", splits: tuple[str, ...] = ("train", "test"),
              n_db: int = 6, n_q: int = 3, spacing: float = 8.0) -> Path:
    """The raw release: 000/ database cutouts, queries_real/000/, datasets/<name>_<split>.mat.

    Places lie along a street 8 m apart (UTM zone 17T, Pittsburgh); each split uses its
    own places, so database and query file names are real `<place>_pitch<p>_yaw<y>.jpg`."""
    for s, split in enumerate(splits):
        db, db_utm, q, q_utm = [], [], [], []
        for i in range(n_db):
            place = f"{s * 100 + i:06d}"
            db.append(f"000/{place}_pitch{1 + i % 2}_yaw{1 + i % 12}.jpg")
            db_utm.append((585000.0 + spacing * i + 1000.0 * s, 4477000.0))
            image(root / db[-1])
        for j in range(n_q):
            place = f"{s * 100 + j:06d}"
            q.append(f"000/{place}_pitch2_yaw{3 + j}.jpg")
            q_utm.append((585000.0 + spacing * 2 * j + 1.0 + 1000.0 * s, 4477002.0))
            image(root / "queries_real" / q[-1])
        pitts_mat(root / "datasets" / f"{name}_{split}.mat", split, db, np.array(db_utm), q,
                  np.array(q_utm))
    return root
