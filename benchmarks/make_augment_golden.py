"""Golden outputs of the official augmentation functions, for geobench's own versions.

Run in an environment with albumentations 1.3 (Sample4Geo's and LRFR's pipelines) and
torchvision (MixVPR's RandAugment on PIL images); neither is a geobench dependency:

    /work/side/tv/bin/python benchmarks/make_augment_golden.py [--out tests/fixtures/augment_golden.npz]

For one seeded RGB image (48x64) it stores, with the parameters fixed (so no random draw
of either library is involved): albumentations' JPEG compression, brightness, contrast,
saturation and hue (ColorJitter's functions), ColorJitter.apply in a given order,
Sharpen and AdvancedBlur's convolution with given kernels, GridDropout's holes for the
image size and ratios 0.4 / 0.5; and torchvision's RandAugment operation (_apply_op) on a
PIL image for every operation at magnitude 9 of 31, both signs. tests/test_augment_golden.py
compares geobench.train.photometric and geobench.train.randaugment against the file.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "augment_golden.npz"
FORMAT = "geobench-augment-golden/1"


def image() -> np.ndarray:
    """Smooth colour gradients with a few sharp shapes (edges for the filters)."""
    rng = np.random.default_rng(23)
    h, w = 48, 64
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([x * 255 / w, y * 255 / h, (x + y) * 255 / (w + h)], axis=2)
    img[10:20, 12:30] = [250, 30, 40]
    img[28:40, 40:58] = [20, 200, 90]
    img += rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()

    import albumentations as A
    import albumentations.augmentations.functional as F
    import torch
    import torchvision
    from PIL import Image
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.autoaugment import _apply_op

    img = image()
    out: dict[str, np.ndarray] = {"format": np.array(FORMAT), "image": img,
                                  "versions": np.array(f"albumentations {A.__version__}, "
                                                       f"torchvision {torchvision.__version__}")}
    for q in (90, 95, 100):
        out[f"jpeg_{q}"] = F.image_compression(img, q, ".jpg")
    for name, fn, values in (("brightness", F.adjust_brightness_torchvision, (0.85, 1.13)),
                             ("contrast", F.adjust_contrast_torchvision, (0.86, 1.15)),
                             ("saturation", F.adjust_saturation_torchvision, (0.87, 1.12)),
                             ("hue", F.adjust_hue_torchvision, (-0.15, 0.07))):
        for v in values:
            out[f"{name}_{v}"] = fn(img, v)
    jitter = A.ColorJitter(0.15, 0.15, 0.15, 0.15, p=1.0)
    out["jitter_order"] = np.array([2, 0, 3, 1])
    out["jitter_factors"] = np.array([1.1, 0.9, 1.05, -0.1])
    out["jitter"] = jitter.apply(img, brightness=1.1, contrast=0.9, saturation=1.05, hue=-0.1,
                                 order=[2, 0, 3, 1])
    sharpen = A.Sharpen(p=1.0)
    matrix = sharpen._Sharpen__generate_sharpening_matrix(alpha_sample=0.35, lightness_sample=0.7)
    out["sharpen_matrix"] = matrix
    out["sharpen"] = sharpen.apply(img, sharpening_matrix=matrix)
    rng = np.random.default_rng(5)
    noise = rng.uniform(0.9, 1.1, (5, 5))
    out["blur_noise"] = noise
    out["blur_params"] = np.array([5, 0.7, 0.4, np.deg2rad(30.0), 2.5])
    # AdvancedBlur.get_params' kernel with these parameters (its formula, its dtype path).
    ksize, sx, sy, angle, beta = 5, 0.7, 0.4, np.deg2rad(30.0), 2.5
    ax = np.arange(-ksize // 2 + 1.0, ksize // 2 + 1.0)
    grid = np.stack(np.meshgrid(ax, ax), axis=-1)
    d = np.array([[sx ** 2, 0], [0, sy ** 2]])
    u = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    inv = np.linalg.inv(np.dot(u, np.dot(d, u.T)))
    kernel = np.exp(-0.5 * np.power(np.sum(np.dot(grid, inv) * grid, 2), beta)) * noise
    kernel = kernel.astype(np.float32) / np.sum(kernel)
    out["blur_kernel"] = kernel
    out["blur"] = A.AdvancedBlur(p=1.0).apply(img, kernel=kernel)
    for ratio in (0.4, 0.5):
        drop = A.GridDropout(ratio=ratio, p=1.0)
        holes = drop.get_params_dependent_on_targets({"image": img})["holes"]
        out[f"grid_{ratio}"] = np.array(holes)
        out[f"grid_{ratio}_image"] = drop.apply(img, holes=holes)
    pil = Image.fromarray(img)
    h, w = img.shape[:2]
    space = torchvision.transforms.RandAugment()._augmentation_space(31, (h, w))
    for op, (mags, signed) in space.items():
        mag = float(mags[9].item()) if mags.ndim > 0 else 0.0
        for sign in ((1, -1) if signed else (1,)):
            res = _apply_op(pil, op, sign * mag, interpolation=InterpolationMode.BILINEAR, fill=None)
            out[f"ra_{op}_{sign}"] = np.asarray(res)
            out[f"ra_{op}_{sign}_mag"] = np.array(sign * mag)
    del torch
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **out)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes, {len(out)} arrays)")


if __name__ == "__main__":
    main()
