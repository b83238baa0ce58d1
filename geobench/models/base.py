"""GeoModel: the contract every registered model follows.

A GeoModel embeds a batch of one view into L2-normalised descriptors
(`embed(images, view) -> (B, D)`), pairs a query and a reference batch in `forward`, and
carries its `card` (input size per view, polar, mean/std, descriptor size, recipe) so the
data pipeline reads preprocessing from the model. Pair-dependent models (asavg) add
`pairwise_score(q_feats, r_feats)` over the maps returned by `features`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from geobench.errors import UsageError
from geobench.models.registry import ModelCard

GROUND_VIEWS = ("ground", "street", "perspective", "drone")


def full_precision(x: torch.Tensor) -> torch.Tensor:
    """Half precision (AMP) promoted to float32; float32 and float64 kept as they are
    (the golden training tests run whole steps in float64)."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
OVERHEAD_VIEWS = ("aerial", "polar")


class GeoModel(nn.Module):
    """Base class. Subclasses implement `encode(images, branch)` -> un-normalised (B, D).

    `branch` is "query" or "reference": two-branch models (separate weights per view)
    pick their tower with it; shared models ignore it. `fixed_size` models (MixVPR, RGA,
    GSRA, SAFA heads) refuse images whose size differs from card.input_size; views outside
    card.input_size are refused unless the model is `view_agnostic`.
    """

    fixed_size: bool = False
    pairwise: bool = False
    view_agnostic: bool = False  # one network for every view and any size: embeds any view

    def __init__(self, card: ModelCard) -> None:
        super().__init__()
        self.card = card

    # --- views ---------------------------------------------------------------
    def branch(self, view: str) -> str:
        """Which tower embeds `view`: "query" or "reference"."""
        card = self.card
        if view == card.query_view:
            return "query"
        if view == card.reference_view:
            return "reference"
        if view in card.input_size or (self.view_agnostic and view in GROUND_VIEWS + OVERHEAD_VIEWS):
            return "reference" if view in OVERHEAD_VIEWS and card.reference_view in OVERHEAD_VIEWS else "query"
        hint = ""
        if view == "aerial" and card.polar:
            hint = " This model takes polar-transformed aerial images: run `geobench polar` and use view 'polar'."
        raise UsageError(
            f"model {self.model_name!r} does not embed view {view!r}; it takes "
            f"{', '.join(sorted(card.input_size))}.{hint}"
        )

    @property
    def model_name(self) -> str:
        return getattr(self, "_registry_name", type(self).__name__.lower())

    def check_input_size(self, images: torch.Tensor, view: str) -> None:
        """Refuse a batch that is not (B, 3, H, W), or of the wrong size for a size-fixed model."""
        if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 3:
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise UsageError(
                f"model {self.model_name!r} embeds image batches of shape (B, 3, H, W); got {shape} "
                f"for view {view!r}."
            )
        want = self.card.input_size.get(view)
        if want is None:
            want = self.card.input_size.get(
                self.card.query_view if self.branch(view) == "query" else self.card.reference_view
            )
        got = tuple(images.shape[-2:])
        if self.fixed_size and want is not None and got != tuple(want):
            h, w = want
            raise UsageError(
                f"model {self.model_name!r} is built for {view} images of {h}x{w} (model.card.input_size) "
                f"but got {got[0]}x{got[1]}: resize them to {h}x{w}, or build the model with "
                f"input_size={{'{view}': ({got[0]}, {got[1]})}}."
            )

    # --- contract -------------------------------------------------------------
    def encode(self, images: torch.Tensor, branch: str) -> torch.Tensor:
        raise NotImplementedError

    def embed(self, images: torch.Tensor, view: str) -> torch.Tensor:
        """L2-normalised float32 descriptors (B, D) of a batch of one view (also under AMP)."""
        self.check_input_size(images, view)
        return F.normalize(full_precision(self.encode(images, self.branch(view))), dim=-1)

    def forward(self, query_images: torch.Tensor, reference_images: torch.Tensor,
                matrix: bool = False) -> tuple[torch.Tensor, torch.Tensor] | torch.Tensor:
        """(query, reference) descriptors of a batch of pairs; matrix=True: their (B, B) scores.

        The training engine asks for the matrix (through DDP, so gradients still reduce) when
        the recipe sets pairwise_training.
        """
        if matrix:
            return self.similarity_matrix(query_images, reference_images)
        return (
            self.embed(query_images, self.card.query_view),
            self.embed(reference_images, self.card.reference_view),
        )

    def similarity_matrix(self, query_images: torch.Tensor, reference_images: torch.Tensor) -> torch.Tensor:
        """S[i, j] = score of query i against reference j over a batch: (B, B).

        The inner product of the descriptors here; pair-dependent models (asavg) override it.
        """
        q = self.embed(query_images, self.card.query_view)
        r = self.embed(reference_images, self.card.reference_view)
        return q @ r.T

    def backbones(self) -> list[nn.Module]:
        """The backbone modules (targets of a `--weights` file), one per tower."""
        from geobench.models.backbones.base import Backbone

        return [m for m in self.modules() if isinstance(m, Backbone)]

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)
