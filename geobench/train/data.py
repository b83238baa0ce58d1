"""Training and embedding datasets: image decoding and the model card's preprocessing.

Which pairs there are and which place each shows: geobench.train.pairs and places.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from geobench.errors import DataError, UsageError
from geobench.train.augment import PairAugment, apply_pair
from geobench.train.pairs import (  # noqa: F401  (re-exported: the public names of this module)
    TRAIN_KINDS,
    PairSet,
    ViewSource,
    build_pairs,
    view_source,
)


def card_size(card: Any, view: str) -> tuple[int, int]:
    size = card.input_size.get(view)
    if size is None:
        raise UsageError(f"the model card has no input size for view {view!r} (it lists "
                         f"{', '.join(sorted(card.input_size))}); choose a model for this dataset")
    return int(size[0]), int(size[1])


_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def jpeg_size(buf: bytes | np.ndarray) -> tuple[int, int] | None:
    """(height, width) from a JPEG's frame header, or None for other or odd files."""
    data = bytes(buf[:65536])
    if data[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 9 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker in _SOF:
            return int.from_bytes(data[i + 5:i + 7], "big"), int.from_bytes(data[i + 7:i + 9], "big")
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        i += 2 + int.from_bytes(data[i + 2:i + 4], "big")
    return None


def reduced_flag(size: tuple[int, int] | None, need: tuple[int, int] | None) -> int:
    """The cv2 imread flag decoding a JPEG at 1/2, 1/4 or 1/8 size (libjpeg's DCT
    scaling, much cheaper than decoding in full and resizing) while every side stays at
    least `need`; full size when no reduction fits."""
    import cv2

    if size is None or need is None:
        return cv2.IMREAD_COLOR
    for factor, flag in ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4),
                         (2, cv2.IMREAD_REDUCED_COLOR_2)):
        if size[0] // factor >= need[0] and size[1] // factor >= need[1]:
            return flag
    return cv2.IMREAD_COLOR


def read_image(path: str, need: tuple[int, int] | None = None) -> np.ndarray:
    """Decode an image file to RGB uint8 (H, W, 3) with OpenCV. With `need` (the smallest
    height and width the caller uses), large JPEGs are decoded at a reduced size. A missing
    or damaged file (a truncated or corrupt JPEG included, see geobench.imagefile) is a
    DataError naming it."""
    import cv2

    from geobench.imagefile import decode_bytes, read_bytes

    buf = read_bytes(path)
    flag = reduced_flag(jpeg_size(buf), need) if need is not None else cv2.IMREAD_COLOR
    return cv2.cvtColor(decode_bytes(buf, path, flag), cv2.COLOR_BGR2RGB)


BAD_IMAGE_POLICIES = ("fail", "skip")
BAD_IMAGES_FILE = "bad_images.txt"


class BadImages:
    """What to do with an unreadable image: `fail` (raise) or `skip` (record and go on).

    Skipped files are appended, one `path<TAB>reason` line each, to `log` (a file in the
    run or output folder): DataLoader workers are separate processes, and a line append
    is the one record they can all add to without coordination.
    """

    def __init__(self, policy: str = "fail", log: str | Path | None = None) -> None:
        if policy not in BAD_IMAGE_POLICIES:
            raise UsageError(f"--on-bad-image {policy!r}: use one of "
                             f"{' | '.join(BAD_IMAGE_POLICIES)}")
        self.policy, self.log = policy, Path(log) if log is not None else None
        self.seen: dict[str, str] = {}

    @property
    def skip(self) -> bool:
        return self.policy == "skip"

    def record(self, exc: DataError) -> None:
        """Raise `exc` under `fail`; under `skip` remember the file it names."""
        if not self.skip:
            raise exc
        message = " ".join(str(exc).split())
        path = message.split(": ", 1)[0]
        if path in self.seen:
            return
        self.seen[path] = message
        if self.log is not None:
            self.log.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log, "a", encoding="utf-8") as handle:
                handle.write(f"{path}\t{message}\n")

    def reset(self) -> None:
        """Start a fresh list (a new run or evaluation writes its own)."""
        self.seen.clear()
        if self.log is not None:
            self.log.unlink(missing_ok=True)


def read_bad_images(log: str | Path) -> dict[str, str]:
    """path -> reason of the files listed in a bad-images log (deduplicated)."""
    try:
        lines = Path(log).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return {}
    out: dict[str, str] = {}
    for line in lines:
        path, _, reason = line.partition("\t")
        if path:
            out.setdefault(path, reason)
    return out


def decode_need(src: ViewSource, size: tuple[int, int]) -> tuple[int, int]:
    """The smallest image a model view is made from: its card size, or for a polar view
    made on the fly an aerial whose radius covers the H rows and whose rim the W columns."""
    if src.on_the_fly_polar:
        side = max(2 * size[0], int(np.ceil(size[1] / np.pi)))
        return side, side
    return size


def resize(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import cv2

    h, w = size
    if img.shape[:2] == (h, w):
        return img
    shrink = img.shape[0] > h and img.shape[1] > w
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def to_model_view(img: np.ndarray, src: ViewSource, size: tuple[int, int], path: str) -> np.ndarray:
    """Resize to the card size, polar-transforming aerial rows for polar models."""
    if src.on_the_fly_polar:
        from geobench.geometry.polar import polar_transform

        return polar_transform(img, size=size, crop_square=True, source=path)
    return resize(img, size)


def normalise(img: np.ndarray, mean: Sequence[float], std: Sequence[float]):
    import torch

    arr = img.astype(np.float32) * (1.0 / 255.0)
    arr -= np.asarray(mean, np.float32)
    arr /= np.asarray(std, np.float32)
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))


class PairDataset:
    """torch-style Dataset of pairs; items are keyed by (pair index, augmentation seed).

    Each pair's random augmentation comes from its own seed (chosen by the sampler from
    the run seed, epoch and pair), so results do not depend on worker count or on where
    a resumed run restarts, and no two workers share a random state. `augment`: the
    photometric options (augment_options.py), applied to each image after the pair's
    joint flip and quarter turns.
    """

    def __init__(self, pairs: PairSet, card: Any, hflip_p: float = 0.0, rotate_p: float = 0.0,
                 bad: BadImages | None = None, augment: dict[str, Any] | None = None) -> None:
        from geobench.train.augment_options import active, resolve_augment

        self.pairs, self.card = pairs, card
        self.hflip_p, self.rotate_p = hflip_p, rotate_p
        self.augment = resolve_augment(augment)
        self.photometric = active(self.augment)
        self.bad = bad or BadImages()
        self.qsize = card_size(card, pairs.query.model_view)
        self.rsize = card_size(card, pairs.reference.model_view)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, key: tuple[int, int]):
        i, seed = key
        n = len(self.pairs)
        # Under --on-bad-image skip a pair with a damaged image is replaced by the next
        # readable pair: the batch keeps its size and the choice depends only on i.
        for k in range(n):
            try:
                return self._load((i + k) % n, seed)
            except DataError as exc:
                self.bad.record(exc)
        raise DataError(f"no readable training pair: every image pair failed to load (see "
                        f"{self.bad.log}); check the dataset with `geobench doctor`")

    def _load(self, i: int, seed: int):
        from geobench.train.photometric import before_resize, photometric

        p = self.pairs
        # One stream per image, from the pair's seed (not from the pair augmentation's).
        rq, rr = np.random.default_rng([seed, 1]), np.random.default_rng([seed, 2])
        q = read_image(p.query_paths[i], self.qsize)
        r = read_image(p.reference_paths[i], decode_need(p.reference, self.rsize))
        if self.photometric:
            q, r = before_resize(q, self.augment, rq), before_resize(r, self.augment, rr)
        q = resize(q, self.qsize)
        aug = PairAugment.draw(seed, self.hflip_p, self.rotate_p)
        # Polar on the fly: augment the aerial first so the transform sees the turned scene.
        rview = p.reference.index_view
        if not p.reference.on_the_fly_polar:
            r = resize(r, self.rsize)
        q, r = apply_pair(q, r, p.query.model_view, rview, aug)
        r = to_model_view(r, p.reference, self.rsize, p.reference_paths[i])
        if r.shape[:2] != self.rsize:  # a non-square aerial turned by 90 degrees
            r = resize(r, self.rsize)
        if self.photometric:
            q, r = photometric(q, self.augment, "query", rq), photometric(r, self.augment, "reference", rr)
        mean, std = self.card.mean, self.card.std
        return normalise(q, mean, std), normalise(r, mean, std)


class ImageDataset:
    """Single images of one view for embedding (no augmentation)."""

    def __init__(self, paths: Sequence[str], src: ViewSource, card: Any,
                 bad: BadImages | None = None) -> None:
        self.paths, self.src, self.card = list(paths), src, card
        self.size = card_size(card, src.model_view)
        self.bad = bad or BadImages()

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        return self.load(i)[0]

    def load(self, i: int):
        """(image tensor, readable) - an unreadable image under `skip` gives zeros, False."""
        import torch

        try:
            path = self.paths[i]
            img = to_model_view(read_image(path, decode_need(self.src, self.size)), self.src,
                                self.size, path)
            return normalise(img, self.card.mean, self.card.std), True
        except DataError as exc:
            self.bad.record(exc)
        return torch.zeros((3, *self.size)), False


class FlaggedImages:
    """An ImageDataset whose items are (tensor, readable), so embedding knows what to drop."""

    def __init__(self, images: ImageDataset) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.images.load(i)


def fork_safe_opencv(workers: int) -> None:
    """Call in the parent before a DataLoader forks `workers` processes.

    Forked workers inherit OpenCV's thread pool without its threads: if the parent had
    used it (rendering the synthetic world or a polar transform in the same process),
    the workers hang in their first OpenCV call. One OpenCV thread in the parent leaves
    no pool to inherit; the workers are the parallelism.
    """
    if workers > 0:
        import cv2

        cv2.setNumThreads(1)


def worker_init(_: int) -> None:
    import cv2

    # Workers already run in parallel; OpenCV's own threads would oversubscribe the cores.
    cv2.setNumThreads(1)
