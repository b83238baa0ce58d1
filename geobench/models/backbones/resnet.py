"""ResNet-50 (torchvision v1.5 layout and parameter names), full or truncated.

Stage i is `layer{i+1}`; stage 0 also runs the stem (conv1, bn1, relu, maxpool).
Truncated after layer3 (MixVPR, MC_GRA): 1024 channels at stride 16.
"""
from __future__ import annotations

from torch import Tensor, nn

from geobench.errors import UsageError
from geobench.models.backbones.base import Backbone, check_stages, maybe_load


class Bottleneck(nn.Module):
    """1×1 → 3×3 (carries the stride, torchvision "v1.5") → 1×1 ×4, residual."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != out:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, out, 1, stride=stride, bias=False), nn.BatchNorm2d(out)
            )

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + identity)


class ResNet(Backbone):
    """Bottleneck ResNet. `num_stages` < 4 drops the deeper layers; `num_classes` > 0 adds
    torchvision's `fc` head (global average pool + linear), used by `forward_head`."""

    def __init__(
        self, layers: tuple[int, ...] = (3, 4, 6, 3), num_stages: int = 4, num_classes: int = 0,
    ) -> None:
        super().__init__()
        check_stages("ResNet", num_stages, len(layers))
        if num_classes and num_stages != len(layers):
            raise UsageError("ResNet: a classification head needs all stages (num_stages=4)")
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        inplanes, channels, strides = 64, [], []
        for i in range(num_stages):
            planes, stride = 64 * 2**i, 1 if i == 0 else 2
            blocks = [Bottleneck(inplanes, planes, stride)]
            inplanes = planes * Bottleneck.expansion
            blocks += [Bottleneck(inplanes, planes) for _ in range(1, layers[i])]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            channels.append(inplanes)
            strides.append(4 * 2**i)
        self.stage_channels, self.stage_strides = tuple(channels), tuple(strides)
        self.num_classes = num_classes
        self.fc = nn.Linear(inplanes, num_classes) if num_classes else None
        dropped = [f"layer{i + 1}." for i in range(num_stages, len(layers))]
        self.dropped_prefixes = tuple(dropped + ([] if num_classes else ["fc."]))
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def stage_modules(self, index: int) -> list[nn.Module]:
        layer = getattr(self, f"layer{index + 1}")
        return [self.conv1, self.bn1, layer] if index == 0 else [layer]

    def run_stage(self, index: int, x: Tensor) -> Tensor:
        if index == 0:
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return getattr(self, f"layer{index + 1}")(x)

    def forward_head(self, features: Tensor) -> Tensor:
        if self.fc is None:
            raise UsageError("ResNet.forward_head: built without a head; pass num_classes > 0")
        return self.fc(features.mean(dim=(2, 3)))


def resnet50(
    pretrained_path: str | None = None, num_stages: int = 4, num_classes: int = 0,
) -> ResNet:
    """ResNet-50; `num_classes=1000` gives torchvision's full classifier (25.557 M params)."""
    return maybe_load(ResNet((3, 4, 6, 3), num_stages, num_classes), pretrained_path)


def resnet50_layer3(pretrained_path: str | None = None) -> ResNet:
    """ResNet-50 up to layer3: 1024 channels at stride 16 (MixVPR, MC_GRA)."""
    return resnet50(pretrained_path, num_stages=3)
