"""Cross-view retrieval losses over a batch of matched (query, reference) pairs.

Row i of `q` and row i of `r` are a matching pair; every other row of the batch is a
negative. All losses take L2-normalised descriptors and are registered by name in
`LOSSES` (`build_loss(name, **kwargs)`), so a recipe or a YAML config picks one by key.

Losses that depend on the batch only through the query x reference similarities
S[i, j] = q_i . r_j also take that matrix directly (`loss.from_similarity(S)`): models
whose score depends on the pair (ASA-VG crops each panorama where it best matches each
query) hand their own (B, B) matrix to the loss instead of two descriptor batches.

Distances for the triplet losses: `distance="squared"` is |q - r|^2 = 2 - 2 q.r (what
SAFA's code computes), `distance="euclidean"` its square root (what the MC_GRA and ASA-VG
papers write). gamma multiplies whichever distance is chosen.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from geobench.errors import UsageError
from geobench.registry import Registry


@dataclass(frozen=True)
class LossCard:
    description: str
    defaults: dict[str, Any] = field(default_factory=dict)


LOSSES: Registry[Callable[..., nn.Module]] = Registry("loss", "python -m geobench.losses")


DISTANCES = ("squared", "euclidean")
# sqrt has an infinite slope at 0: a pair of identical descriptors would give NaN gradients.
_SQRT_FLOOR = 1e-12


def squared_distances(q: Tensor, r: Tensor) -> Tensor:
    """D[i, j] = |q_i - r_j|^2 = 2 - 2 q_i.r_j for unit vectors (rows: queries)."""
    return 2.0 - 2.0 * (q @ r.T)


def similarity_to_distance(sim: Tensor, distance: str = "squared") -> Tensor:
    """Distances between unit vectors from their inner products (see the module doc)."""
    squared = 2.0 - 2.0 * sim
    if distance == "squared":
        return squared
    return squared.clamp_min(_SQRT_FLOOR).sqrt()


def _check_distance(distance: str) -> str:
    if distance not in DISTANCES:
        raise UsageError(f"loss distance must be one of {' | '.join(DISTANCES)}, got {distance!r}; "
                         f"set it in loss_args (e.g. loss_args: {{distance: euclidean}})")
    return distance


def _full(x: Tensor) -> Tensor:
    """Half-precision descriptors (AMP) are promoted; float64 stays float64."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _check_pairs(q: Tensor, r: Tensor) -> None:
    if q.ndim != 2 or q.shape != r.shape:
        raise UsageError(f"loss expects two (B, D) descriptor batches of equal shape, got "
                         f"{tuple(q.shape)} and {tuple(r.shape)}; check the model's embed()")
    if q.shape[0] < 2:
        raise UsageError("in-batch losses need at least 2 pairs per batch; raise --batch-size")


def _check_matrix(sim: Tensor) -> None:
    if sim.ndim != 2 or sim.shape[0] != sim.shape[1]:
        raise UsageError(f"a pairwise loss expects a square (B, B) similarity matrix, got "
                         f"{tuple(sim.shape)}; check the model's similarity_matrix()")
    if sim.shape[0] < 2:
        raise UsageError("in-batch losses need at least 2 pairs per batch; raise --batch-size")


def _off_diagonal(b: int, device: torch.device) -> Tensor:
    return ~torch.eye(b, dtype=torch.bool, device=device)


class SoftMarginTriplet(nn.Module):
    """Weighted soft-margin triplet over all in-batch pairs in both directions.

    For query j: log(1 + exp(gamma (D_jj - D_ji))) over references i != j, and the same
    with the reference as anchor; each direction is averaged over its B(B-1) terms and
    the two directions are averaged. `hard_k` keeps only the k largest terms per anchor
    (SAFA's in-batch hard mining). D is the `distance` of the module doc.

    `count_diagonal=True` is SAFA's code: it sums all B x B terms, the B positives'
    own log(1 + exp(0)) = log 2 included, and divides by B(B-1). The gradients are the
    same (those terms are constant); the logged loss is log 2 / (B-1) higher and never
    reaches 0. With `hard_k` the k largest of the B terms per anchor are kept, as there.
    """

    def __init__(self, gamma: float = 10.0, hard_k: int | None = None,
                 distance: str = "squared", count_diagonal: bool = False) -> None:
        super().__init__()
        if hard_k is not None and hard_k < 1:
            raise UsageError(f"hard_k must be >= 1, got {hard_k}")
        self.gamma, self.hard_k = float(gamma), hard_k
        self.distance = _check_distance(distance)
        self.count_diagonal = bool(count_diagonal)

    def _direction(self, pos: Tensor, dist: Tensor, mask: Tensor) -> Tensor:
        # pos[a]: anchor a's positive distance; dist[a, n]: distance to candidate n.
        terms = F.softplus(self.gamma * (pos[:, None] - dist))
        b = dist.shape[0]
        if not self.count_diagonal:
            terms = terms[mask].view(b, b - 1)
        if self.hard_k is not None:
            return terms.topk(min(self.hard_k, terms.shape[1]), dim=1).values.mean()
        return terms.sum() / (b * (b - 1))

    def forward(self, q: Tensor, r: Tensor) -> Tensor:
        _check_pairs(q, r)
        return self.from_similarity(_full(q) @ _full(r).T)

    def from_similarity(self, sim: Tensor) -> Tensor:
        """The loss from S[i, j] = similarity of query i and reference j (B, B)."""
        _check_matrix(sim)
        dist = similarity_to_distance(_full(sim), self.distance)
        pos = dist.diagonal()
        mask = _off_diagonal(dist.shape[0], dist.device)
        q_anchor = self._direction(pos, dist, mask)
        r_anchor = self._direction(pos, dist.T, mask)
        return 0.5 * (q_anchor + r_anchor)


class SemiSoftTriHard(nn.Module):
    """LRFR's semi-hard soft-margin triplet: one selected negative per anchor.

    If some negatives are closer than the positive, the farthest of those is taken;
    otherwise the closest negative. Loss log(1 + exp(alpha (d+ - d-))) averaged over the
    anchors of both directions.
    """

    def __init__(self, alpha: float = 10.0, distance: str = "squared") -> None:
        super().__init__()
        self.alpha = float(alpha)
        self.distance = _check_distance(distance)

    def _direction(self, dist: Tensor) -> Tensor:
        b = dist.shape[0]
        pos = dist.diagonal()
        eye = torch.eye(b, dtype=torch.bool, device=dist.device)
        with torch.no_grad():
            inside = (dist < pos[:, None]) & ~eye
            # Largest violating distance, else smallest negative.
            violating = torch.where(inside, dist, torch.full_like(dist, -math.inf)).argmax(1)
            easiest = torch.where(eye, torch.full_like(dist, math.inf), dist).argmin(1)
            chosen = torch.where(inside.any(1), violating, easiest)
        neg = dist.gather(1, chosen[:, None]).squeeze(1)
        return F.softplus(self.alpha * (pos - neg)).mean()

    def forward(self, q: Tensor, r: Tensor) -> Tensor:
        _check_pairs(q, r)
        return self.from_similarity(_full(q) @ _full(r).T)

    def from_similarity(self, sim: Tensor) -> Tensor:
        _check_matrix(sim)
        dist = similarity_to_distance(_full(sim), self.distance)
        return 0.5 * (self._direction(dist) + self._direction(dist.T))


class SymmetricInfoNCE(nn.Module):
    """Symmetric InfoNCE with a learnable (unclamped) logit scale and label smoothing."""

    def __init__(self, temperature: float = 0.07, label_smoothing: float = 0.1,
                 learnable: bool = True) -> None:
        super().__init__()
        if temperature <= 0:
            raise UsageError(f"temperature must be > 0, got {temperature}")
        init = torch.tensor(math.log(1.0 / temperature))
        self.logit_scale = nn.Parameter(init, requires_grad=learnable)
        self.label_smoothing = float(label_smoothing)

    def forward(self, q: Tensor, r: Tensor) -> Tensor:
        _check_pairs(q, r)
        return self.from_similarity(_full(q) @ _full(r).T)

    def from_similarity(self, sim: Tensor) -> Tensor:
        _check_matrix(sim)
        logits = self.logit_scale.exp() * _full(sim)
        target = torch.arange(sim.shape[0], device=sim.device)
        ce = lambda x: F.cross_entropy(x, target, label_smoothing=self.label_smoothing)  # noqa: E731
        return 0.5 * (ce(logits) + ce(logits.T))


class MultiSimilarity(nn.Module):
    """Multi-Similarity loss with its miner (MixVPR / SALAD VPR training).

    The 2B descriptors of the batch form one set labelled by pair, so each image has
    its partner as the one positive and every other image as a negative; with `labels`
    (B,) place ids (places x images batches, MixVPR) every image of the same place is a
    positive. With `epsilon`, the miner keeps negatives with s + eps > the anchor's
    weakest positive and positives with s - eps < its strongest negative; None mines nothing.
    """

    takes_labels = True

    def __init__(self, alpha: float = 1.0, beta: float = 50.0, base: float = 0.0,
                 epsilon: float | None = 0.1) -> None:
        super().__init__()
        self.alpha, self.beta, self.base, self.epsilon = float(alpha), float(beta), float(base), epsilon

    def forward(self, q: Tensor, r: Tensor, labels: Tensor | None = None) -> Tensor:
        _check_pairs(q, r)
        x = torch.cat([_full(q), _full(r)])
        if labels is None:
            labels = torch.arange(q.shape[0], device=q.device)
        labels = labels.to(q.device).repeat(2)
        sim = x @ x.T
        same = labels[:, None] == labels[None, :]
        eye = torch.eye(len(x), dtype=torch.bool, device=x.device)
        pos, neg = same & ~eye, ~same
        if self.epsilon is not None:
            with torch.no_grad():
                inf = torch.full_like(sim, math.inf)
                weakest_pos = torch.where(pos, sim, inf).min(1, keepdim=True).values
                strongest_neg = torch.where(neg, sim, -inf).max(1, keepdim=True).values
                neg = neg & (sim + self.epsilon > weakest_pos)
                pos = pos & (sim - self.epsilon < strongest_neg)
        zero = torch.zeros_like(sim)
        pos_sum = torch.where(pos, torch.exp(-self.alpha * (sim - self.base)), zero).sum(1)
        neg_sum = torch.where(neg, torch.exp(self.beta * (sim - self.base)), zero).sum(1)
        per_anchor = torch.log1p(pos_sum) / self.alpha + torch.log1p(neg_sum) / self.beta
        return per_anchor.mean()


@LOSSES.register(LossCard("weighted soft-margin triplet, all 2B(B-1) in-batch triplets "
                          "(SAFA, MC_GRA, ASA-VG); distance squared | euclidean; "
                          "count_diagonal: SAFA's code also sums the B log-2 positive terms",
                          {"gamma": 10.0, "distance": "squared", "count_diagonal": False}))
def soft_margin_triplet(gamma: float = 10.0, distance: str = "squared",
                        count_diagonal: bool = False) -> nn.Module:
    return SoftMarginTriplet(gamma=gamma, distance=distance, count_diagonal=count_diagonal)


@LOSSES.register(LossCard("weighted soft-margin triplet keeping the k hardest negatives per "
                          "anchor (SAFA batch_hard_count)",
                          {"gamma": 10.0, "hard_k": 4, "distance": "squared", "count_diagonal": False}))
def soft_margin_triplet_hard(gamma: float = 10.0, hard_k: int = 4, distance: str = "squared",
                             count_diagonal: bool = False) -> nn.Module:
    return SoftMarginTriplet(gamma=gamma, hard_k=hard_k, distance=distance,
                             count_diagonal=count_diagonal)


@LOSSES.register(LossCard("LRFR SemiSoftTriHard: one semi-hard negative per anchor",
                          {"alpha": 10.0, "distance": "squared"}))
def semi_soft_tri_hard(alpha: float = 10.0, distance: str = "squared") -> nn.Module:
    return SemiSoftTriHard(alpha=alpha, distance=distance)


@LOSSES.register(LossCard("symmetric InfoNCE, learnable temperature, label smoothing "
                          "(Sample4Geo)", {"temperature": 0.07, "label_smoothing": 0.1}))
def infonce(temperature: float = 0.07, label_smoothing: float = 0.1,
            learnable: bool = True) -> nn.Module:
    return SymmetricInfoNCE(temperature, label_smoothing, learnable)


@LOSSES.register(LossCard("Multi-Similarity loss + miner over the 2B images of the batch "
                          "(MixVPR, SALAD)", {"alpha": 1.0, "beta": 50.0, "base": 0.0, "epsilon": 0.1}))
def multi_similarity(alpha: float = 1.0, beta: float = 50.0, base: float = 0.0,
                     epsilon: float | None = 0.1) -> nn.Module:
    return MultiSimilarity(alpha, beta, base, epsilon)


def takes_similarity(loss: nn.Module) -> bool:
    """Whether `loss` can be computed from a (B, B) query x reference similarity matrix."""
    return callable(getattr(loss, "from_similarity", None))


def build_loss(name: str, **kwargs: Any) -> nn.Module:
    factory = LOSSES.get(name)
    try:
        return factory(**kwargs)
    except TypeError as exc:
        raise UsageError(f"loss {name!r}: bad arguments {kwargs} ({exc}); its defaults are "
                         f"{LOSSES.card(name).defaults}") from None


if __name__ == "__main__":
    for entry in LOSSES:
        print(f"{entry.name:28s} {entry.card.description}  defaults={entry.card.defaults}")
