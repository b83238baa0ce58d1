"""VGG-16 convolutional features with torchvision's indices (`features.N.weight`).

The five conv blocks are the stages; each ends with a 2×2 max pool. Truncation keeps
torchvision's indices, so `features.28.weight` is conv5_3 in every variant.
"""
from __future__ import annotations

from torch import Tensor, nn

from geobench.models.backbones.base import Backbone, check_stages, maybe_load

VGG16_BLOCKS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


class VGGFeatures(Backbone):
    """`num_stages` conv blocks; `final_pool=False` drops the last block's max pool
    (halving the output stride, as CVGL models do to keep spatial detail).

    `same_pool=True` pools odd sizes like TensorFlow's 2×2 "SAME" max pool (the last
    row/column forms a window of its own: ceil(n/2)), as SAFA's TensorFlow VGG does.
    `dropout` > 0 drops activations after every conv ReLU from stage `dropout_from`
    (0-based) on (SAFA: p = 0.2 on conv4_1–conv5_3). It is applied in `run_stage`, not
    as layers, so `features.N` keeps torchvision's indices and its weights load unchanged.
    """

    def __init__(
        self, blocks: tuple[tuple[int, ...], ...] = VGG16_BLOCKS,
        num_stages: int = 5, final_pool: bool = True, same_pool: bool = False,
        dropout: float = 0.0, dropout_from: int = 3,
    ) -> None:
        super().__init__()
        check_stages("VGG", num_stages, len(blocks))
        layers: list[nn.Module] = []
        self._bounds: list[tuple[int, int]] = []
        self._dropped: set[int] = set()  # indices of the ReLUs followed by dropout
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None
        c_in, strides = 3, []
        for i, block in enumerate(blocks[:num_stages]):
            start = len(layers)
            for c_out in block:
                layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(inplace=True)]
                if i >= dropout_from:
                    self._dropped.add(len(layers) - 1)
                c_in = c_out
            last = i == num_stages - 1
            if final_pool or not last:
                layers.append(nn.MaxPool2d(2, 2, ceil_mode=same_pool))
            self._bounds.append((start, len(layers)))
            strides.append(2 ** (i + 1) if final_pool or not last else 2**i)
        self.features = nn.Sequential(*layers)
        self.stage_channels = tuple(b[-1] for b in blocks[:num_stages])
        self.stage_strides = tuple(strides)
        # Conv indices past ours in the full network, plus torchvision's classifier.
        n_full = sum(2 * len(b) + 1 for b in blocks)
        self.dropped_prefixes = tuple(
            f"features.{j}." for j in range(len(layers), n_full)
        ) + ("classifier.",)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def stage_modules(self, index: int) -> list[nn.Module]:
        start, stop = self._bounds[index]
        return list(self.features[start:stop])

    def run_stage(self, index: int, x: Tensor) -> Tensor:
        start, stop = self._bounds[index]
        for j in range(start, stop):
            x = self.features[j](x)
            if self.dropout is not None and j in self._dropped:
                x = self.dropout(x)
        return x


def vgg16(
    pretrained_path: str | None = None, num_stages: int = 5, final_pool: bool = True,
) -> VGGFeatures:
    """VGG-16 `features` (14.715 M params): 512 channels at stride 32 (16 without the final pool)."""
    return maybe_load(VGGFeatures(VGG16_BLOCKS, num_stages, final_pool), pretrained_path)
