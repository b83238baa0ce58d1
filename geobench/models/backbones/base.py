"""What every backbone offers: staged forward, channels/strides, freezing, weight loading.

A backbone is a feature extractor split into stages (ResNet layer1..4, VGG conv blocks,
ConvNeXt/LSKNet stages). Models may run stages one at a time (`run_stage`) to insert a
module between them (e.g. SFE after LSKNet stage 2). Parameter names follow torchvision
or the official repositories, so their weight files load (see geobench.models.weights).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor, nn

from geobench.errors import UsageError

if TYPE_CHECKING:
    from geobench.models.weights import LoadReport


class Backbone(nn.Module):
    """Base class. Subclasses fill `stage_channels`/`stage_strides` and implement `run_stage`.

    `out_channels` and `stride` describe the output of `forward` (the last kept stage).
    `dropped_prefixes` name the parameters of the full published network that this
    (possibly truncated, head-less) variant does not build: a weight file may contain them.
    """

    stage_channels: tuple[int, ...] = ()
    stage_strides: tuple[int, ...] = ()
    dropped_prefixes: tuple[str, ...] = ()

    @property
    def num_stages(self) -> int:
        return len(self.stage_channels)

    @property
    def out_channels(self) -> int:
        return self.stage_channels[-1]

    @property
    def stride(self) -> int:
        return self.stage_strides[-1]

    def run_stage(self, index: int, x: Tensor) -> Tensor:
        raise NotImplementedError

    def stage_modules(self, index: int) -> list[nn.Module]:
        """The modules whose parameters belong to stage `index` (for freezing)."""
        raise NotImplementedError

    def forward_stages(self, x: Tensor) -> list[Tensor]:
        """Every stage's output, shallowest first."""
        outs = []
        for i in range(self.num_stages):
            x = self.run_stage(i, x)
            outs.append(x)
        return outs

    def forward(self, x: Tensor) -> Tensor:
        for i in range(self.num_stages):
            x = self.run_stage(i, x)
        return x

    def freeze_stages(self, n: int) -> None:
        """Stop gradients to the first `n` stages (MixVPR's `layers_to_freeze`).

        BatchNorm statistics still update in train mode, as in MixVPR; call `.eval()` on
        those modules as well if they must stay fixed.
        """
        if not 0 <= n <= self.num_stages:
            raise UsageError(f"freeze_stages: n must be in [0, {self.num_stages}], got {n}")
        for i in range(n):
            for module in self.stage_modules(i):
                module.requires_grad_(False)

    def convert_state_dict(self, state: dict[str, Tensor]) -> tuple[dict[str, Tensor], str | None]:
        """Rename a foreign naming scheme to ours; returns (state, name of the scheme or None)."""
        return state, None

    def load_weights(self, path: str, strict: bool = True, prefix: str | None = None,
                     state: dict[str, Tensor] | None = None) -> LoadReport:
        """Load a local weight file (see geobench.models.weights.load_weights)."""
        from geobench.models.weights import load_weights

        return load_weights(self, path, strict=strict, prefix=prefix, state=state)


def drop_path(x: Tensor, p: float, training: bool) -> Tensor:
    """Stochastic depth: drop whole residual branches per sample, rescale the rest."""
    if p == 0.0 or not training:
        return x
    keep = 1.0 - p
    shape = (x.shape[0],) + (1,) * (x.dim() - 1)
    mask = x.new_empty(shape).bernoulli_(keep)
    return x * (mask.div_(keep) if keep > 0 else mask)  # p = 1 drops all, as torchvision


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW map (timm/torchvision `LayerNorm2d`)."""

    def forward(self, x: Tensor) -> Tensor:
        x = x.permute(0, 2, 3, 1)
        x = nn.functional.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


def linear_rates(rate: float, n: int) -> list[float]:
    """Drop-path rates rising linearly from 0 to `rate` over `n` blocks (torch.linspace)."""
    return [rate * i / (n - 1) if n > 1 else 0.0 for i in range(n)]


def check_stages(name: str, num_stages: int, available: int) -> None:
    if not 1 <= num_stages <= available:
        raise UsageError(f"{name}: num_stages must be in [1, {available}], got {num_stages}")


def maybe_load(model: Backbone, pretrained_path: str | None) -> Backbone:
    if pretrained_path is not None:
        model.load_weights(pretrained_path)
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["Backbone", "LayerNorm2d", "drop_path", "count_parameters", "check_stages", "linear_rates", "maybe_load"]
