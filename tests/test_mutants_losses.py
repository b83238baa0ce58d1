"""geobench.losses against hand-computed values where the mutation run found gaps (issue 18).

Each test pins one behaviour a surviving mutant changed: exact error messages, the
`similarity_to_distance` values and its sqrt floor, `takes_similarity`, MultiSimilarity's
alpha/beta/base terms and its miner (ties, place labels), SemiSoftTriHard's tie rule,
the euclidean option of `from_similarity`, and that every tensor a loss creates follows
its inputs' device. Reference values come from float64 Python loops over the batch.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from geobench.errors import UsageError
from geobench.losses import (
    MultiSimilarity,
    SemiSoftTriHard,
    SoftMarginTriplet,
    SymmetricInfoNCE,
    _off_diagonal,
    build_loss,
    similarity_to_distance,
    takes_similarity,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PAIR_LOSSES = ["soft_margin_triplet", "soft_margin_triplet_hard", "semi_soft_tri_hard",
               "infonce", "multi_similarity"]
MATRIX_LOSSES = ["soft_margin_triplet", "soft_margin_triplet_hard", "semi_soft_tri_hard",
                 "infonce"]
TOO_FEW = "in-batch losses need at least 2 pairs per batch; raise --batch-size"


def _unit(b: int, d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(b, d, generator=g, dtype=torch.float64), dim=1)


def _message(excinfo) -> str:
    return str(excinfo.value)


# --------------------------------------------------------------------------- argument checks


@pytest.mark.parametrize("cls", [SoftMarginTriplet, SemiSoftTriHard])
def test_unknown_distance_message_is_exact(cls):
    with pytest.raises(UsageError) as exc:
        cls(distance="cosine")
    assert _message(exc) == ("loss distance must be one of squared | euclidean, got 'cosine'; "
                             "set it in loss_args (e.g. loss_args: {distance: euclidean})")


@pytest.mark.parametrize("name", MATRIX_LOSSES)
@pytest.mark.parametrize("shape", [(2, 3), (3, 2), (4,)])
def test_non_square_similarity_matrix_is_refused_with_its_shape(name, shape):
    # a (2, 3) matrix is 2-D, so only the squareness test can refuse it
    with pytest.raises(UsageError) as exc:
        build_loss(name).double().from_similarity(torch.zeros(shape, dtype=torch.float64))
    assert _message(exc) == (f"a pairwise loss expects a square (B, B) similarity matrix, got "
                             f"{shape}; check the model's similarity_matrix()")


@pytest.mark.parametrize("name", MATRIX_LOSSES)
def test_one_by_one_similarity_matrix_is_refused(name):
    with pytest.raises(UsageError) as exc:
        build_loss(name).from_similarity(torch.ones(1, 1))
    assert _message(exc) == TOO_FEW


@pytest.mark.parametrize("name", PAIR_LOSSES)
def test_a_single_pair_is_refused_by_every_loss(name):
    # MultiSimilarity never builds a (B, B) matrix: only the pair check stops B = 1
    with pytest.raises(UsageError) as exc:
        build_loss(name)(torch.ones(1, 4), torch.ones(1, 4))
    assert _message(exc) == TOO_FEW


@pytest.mark.parametrize("name", PAIR_LOSSES)
def test_one_dimensional_descriptors_are_a_valid_batch(name):
    # D = 1 is legal (unit vectors are +-1); the batch size B = 2 is what must be >= 2
    q = torch.tensor([[1.0], [-1.0]], dtype=torch.float64)
    loss = build_loss(name).double()(q, q.clone())
    assert loss.shape == () and torch.isfinite(loss)


# --------------------------------------------------------------------------- distances


def test_similarity_to_distance_values_and_default():
    sim = torch.tensor([[0.5, -1.0], [1.0, 0.75]], dtype=torch.float64)
    squared = torch.tensor([[1.0, 4.0], [0.0, 0.5]], dtype=torch.float64)
    assert torch.equal(similarity_to_distance(sim), squared)          # default: squared
    assert torch.equal(similarity_to_distance(sim, "squared"), squared)
    euclid = similarity_to_distance(sim, "euclidean")
    assert euclid[0].tolist() == [1.0, 2.0]
    assert euclid[1, 1].item() == pytest.approx(math.sqrt(0.5), rel=1e-15)
    # identical vectors (and rounding just above 1) sit on the 1e-12 floor: sqrt = 1e-6
    assert euclid[1, 0].item() == pytest.approx(1e-6, rel=1e-12)
    above = similarity_to_distance(torch.tensor([1.0 + 2.0 ** -40], dtype=torch.float64),
                                   "euclidean")
    assert above.item() == pytest.approx(1e-6, rel=1e-12)


def test_euclidean_gradient_is_finite_when_a_pair_is_identical():
    # a similarity of exactly 1 makes |q - r|^2 exactly 0, where sqrt's slope is infinite
    sim = torch.tensor([[1.0, 0.25, 0.0], [0.5, 1.0, -0.5], [0.0, 0.25, 1.0]],
                       dtype=torch.float64, requires_grad=True)
    for name in ("soft_margin_triplet", "semi_soft_tri_hard"):
        loss = build_loss(name, distance="euclidean").double().from_similarity(sim)
        (grad,) = torch.autograd.grad(loss, sim)
        assert torch.isfinite(loss) and torch.isfinite(grad).all(), name


def _d(s: float, euclidean: bool) -> float:
    sq = 2.0 - 2.0 * s
    return math.sqrt(max(sq, 1e-12)) if euclidean else sq


def brute_triplet_matrix(sim, gamma: float, euclidean: bool) -> float:
    b = len(sim)
    total = 0.0
    for a in range(b):
        for n in range(b):
            if n != a:
                pos = _d(sim[a][a], euclidean)
                total += math.log1p(math.exp(gamma * (pos - _d(sim[a][n], euclidean))))
                total += math.log1p(math.exp(gamma * (pos - _d(sim[n][a], euclidean))))
    return total / (2 * b * (b - 1))


def brute_semi_hard_matrix(sim, alpha: float, euclidean: bool) -> float:
    b = len(sim)
    total = 0.0
    for rows in (sim, [list(c) for c in zip(*sim, strict=True)]):
        for a in range(b):
            pos = _d(rows[a][a], euclidean)
            negs = [_d(rows[a][n], euclidean) for n in range(b) if n != a]
            closer = [d for d in negs if d < pos]       # strictly closer than the positive
            neg = max(closer) if closer else min(negs)
            total += math.log1p(math.exp(alpha * (pos - neg)))
    return total / (2 * b)


@pytest.mark.parametrize("euclidean", [False, True])
def test_from_similarity_uses_the_chosen_distance(euclidean):
    sim = (_unit(4, 3, 11) @ _unit(4, 3, 12).T)
    rows = sim.tolist()
    distance = "euclidean" if euclidean else "squared"
    tri = build_loss("soft_margin_triplet", gamma=3.0, distance=distance).double()
    semi = build_loss("semi_soft_tri_hard", alpha=3.0, distance=distance).double()
    assert tri.from_similarity(sim).item() == pytest.approx(
        brute_triplet_matrix(rows, 3.0, euclidean), rel=1e-12)
    assert semi.from_similarity(sim).item() == pytest.approx(
        brute_semi_hard_matrix(rows, 3.0, euclidean), rel=1e-12)


def test_semi_hard_negative_at_exactly_the_positive_distance_is_not_violating():
    # row 0: positive at d = 1.0, one negative tied at 1.0 and one violating at 0.5; the
    # tied one is not closer, so the violating one is chosen (loss term softplus(5))
    sim = [[0.5, 0.5, 0.75], [0.25, 0.5, 0.0], [0.0, 0.25, 0.5]]
    got = SemiSoftTriHard(alpha=10.0).double().from_similarity(
        torch.tensor(sim, dtype=torch.float64)).item()
    assert got == pytest.approx(brute_semi_hard_matrix(sim, 10.0, False), rel=1e-12)


def test_takes_similarity():
    for name in MATRIX_LOSSES:
        assert takes_similarity(build_loss(name)) is True, name
    assert takes_similarity(build_loss("multi_similarity")) is False
    assert takes_similarity(torch.nn.MSELoss()) is False


# --------------------------------------------------------------------------- multi-similarity


def brute_multi_similarity(x, labels, alpha, beta, base, eps) -> float:
    """x: the 2B descriptors (queries then references), labels: their 2B place ids."""
    n = len(x)
    total = 0.0
    for i in range(n):
        sims = {j: sum(a * b for a, b in zip(x[i], x[j], strict=True))
                for j in range(n) if j != i}
        pos = [j for j in sims if labels[j] == labels[i]]
        neg = [j for j in sims if labels[j] != labels[i]]
        if eps is not None:
            weakest = min((sims[j] for j in pos), default=math.inf)
            strongest = max((sims[j] for j in neg), default=-math.inf)
            neg = [j for j in neg if sims[j] + eps > weakest]
            pos = [j for j in pos if sims[j] - eps < strongest]
        total += math.log1p(sum(math.exp(-alpha * (sims[j] - base)) for j in pos)) / alpha
        total += math.log1p(sum(math.exp(beta * (sims[j] - base)) for j in neg)) / beta
    return total / n


@pytest.mark.parametrize("eps", [None, 0.3])
def test_multi_similarity_alpha_beta_and_base(eps):
    q, r = _unit(4, 3, 21), _unit(4, 3, 22)
    loss = MultiSimilarity(alpha=2.0, beta=10.0, base=0.3, epsilon=eps)(q, r).item()
    x = torch.cat([q, r]).tolist()
    want = brute_multi_similarity(x, [0, 1, 2, 3] * 2, 2.0, 10.0, 0.3, eps)
    assert loss == pytest.approx(want, rel=1e-12)


def test_multi_similarity_miner_with_place_labels_uses_each_anchors_own_negatives():
    # several positives per anchor: a positive is kept by comparing it with the strongest
    # negative of ITS anchor, not of the positive's column
    q, r = _unit(6, 3, 31), _unit(6, 3, 32)
    labels = torch.tensor([0, 0, 0, 1, 1, 2])
    got = MultiSimilarity(alpha=2.0, beta=10.0, base=0.2, epsilon=0.2)(q, r, labels).item()
    x = torch.cat([q, r]).tolist()
    want = brute_multi_similarity(x, labels.tolist() * 2, 2.0, 10.0, 0.2, 0.2)
    assert got == pytest.approx(want, rel=1e-12)


def test_multi_similarity_miner_ties_are_dropped():
    # Exact dot products: q0.r0 = 0.5, every other pair of q0/r0 with q1/r1 is 0, q1.r1 = 1.
    # With epsilon 0.5, anchor q0's negatives sit exactly at weakest positive - eps and its
    # positive exactly at strongest negative + eps: the miner's strict < and > drop both,
    # so nothing is mined anywhere and the loss is exactly 0.
    h = math.sqrt(3.0) / 2.0
    q = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    r = torch.tensor([[0.5, h, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    got = MultiSimilarity(alpha=2.0, beta=10.0, epsilon=0.5)(q, r).item()
    assert got == brute_multi_similarity(torch.cat([q, r]).tolist(), [0, 1, 0, 1], 2.0, 10.0,
                                         0.0, 0.5) == 0.0
    # without the miner the same batch has a positive loss
    assert MultiSimilarity(alpha=2.0, beta=10.0, epsilon=None)(q, r).item() > 0.0


# --------------------------------------------------------------------------- devices


def _meta_batch() -> tuple[torch.Tensor, torch.Tensor]:
    return _unit(4, 3, 41).float().to("meta"), _unit(4, 3, 42).float().to("meta")


# The meta device stands in for an accelerator on a CPU-only machine: an op that mixes a
# CPU tensor into meta tensors raises, as mixing CPU and CUDA tensors does. The first
# meta-device eye/cross-entropy in a process imports torch._dynamo (about 2.5 s, once).


def test_infonce_targets_follow_the_similarities_device():
    q, r = _meta_batch()
    out = SymmetricInfoNCE().to("meta")(q, r)
    assert out.device.type == "meta" and out.shape == ()


def test_masks_and_labels_follow_the_descriptors_device():
    # SoftMarginTriplet's boolean-mask indexing has no meta kernel, so its mask is checked
    # through _off_diagonal.
    q, r = _meta_batch()
    for loss in (SemiSoftTriHard(), MultiSimilarity()):
        out = loss(q, r)
        assert out.device.type == "meta" and out.shape == (), type(loss).__name__
    # place labels handed over on the CPU are moved to the descriptors' device
    out = MultiSimilarity()(q, r, torch.tensor([0, 0, 1, 1]))
    assert out.device.type == "meta" and out.shape == ()
    mask = _off_diagonal(3, torch.device("meta"))
    assert mask.device.type == "meta" and mask.dtype == torch.bool and mask.shape == (3, 3)
    assert _off_diagonal(3, torch.device("cpu")).tolist() == [
        [False, True, True], [True, False, True], [True, True, False]]
