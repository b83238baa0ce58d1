"""Each loss against a brute-force Python loop over the batch (reference/models.md §4)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from geobench.errors import UnknownNameError, UsageError
from geobench.losses import LOSSES, build_loss


def _batch(b: int = 6, d: int = 5, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    q = F.normalize(torch.randn(b, d, generator=g, dtype=torch.float64), dim=1)
    r = F.normalize(torch.randn(b, d, generator=g, dtype=torch.float64), dim=1)
    return q, r


def _dist(a, b) -> float:
    return float(sum((x - y) ** 2 for x, y in zip(a.tolist(), b.tolist())))


def _softplus(x: float) -> float:
    return math.log(1.0 + math.exp(x))


def brute_triplet(q, r, gamma=10.0, hard_k=None, diagonal=False) -> float:
    """diagonal: SAFA's train_cvusa.compute_loss, the B x B sum over B(B-1) (top-k of B)."""
    b = len(q)
    directions = []
    for anchors, others in ((q, r), (r, q)):
        total, count = 0.0, 0
        for a in range(b):
            pos = _dist(anchors[a], others[a])
            terms = [_softplus(gamma * (pos - _dist(anchors[a], others[n])))
                     for n in range(b) if n != a or diagonal]
            if hard_k is not None:
                terms = sorted(terms, reverse=True)[:hard_k]
            total += sum(terms)
            count += len(terms) if hard_k is not None or not diagonal else b - 1
        directions.append(total / count)
    return sum(directions) / 2


def brute_semi_hard(q, r, alpha=10.0) -> float:
    b = len(q)
    directions = []
    for anchors, others in ((q, r), (r, q)):
        total = 0.0
        for a in range(b):
            pos = _dist(anchors[a], others[a])
            negs = [_dist(anchors[a], others[n]) for n in range(b) if n != a]
            closer = [d for d in negs if d < pos]
            neg = max(closer) if closer else min(negs)
            total += _softplus(alpha * (pos - neg))
        directions.append(total / b)
    return sum(directions) / 2


def brute_infonce(q, r, scale=1 / 0.07, eps=0.1) -> float:
    b = len(q)
    sim = [[scale * float(q[i] @ r[j]) for j in range(b)] for i in range(b)]
    directions = []
    for rows in (sim, [list(c) for c in zip(*sim)]):
        total = 0.0
        for i, row in enumerate(rows):
            log_z = math.log(sum(math.exp(v) for v in row))
            logp = [v - log_z for v in row]
            # Label smoothing: (1-eps) on the target plus eps spread uniformly.
            total += -((1 - eps) * logp[i] + eps * sum(logp) / b)
        directions.append(total / b)
    return sum(directions) / 2


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_soft_margin_triplet_matches_loop(seed):
    q, r = _batch(seed=seed)
    assert build_loss("soft_margin_triplet")(q, r).item() == pytest.approx(brute_triplet(q, r), rel=1e-9)
    got = build_loss("soft_margin_triplet", gamma=3.0)(q, r).item()
    assert got == pytest.approx(brute_triplet(q, r, gamma=3.0), rel=1e-9)


@pytest.mark.parametrize("k", [1, 2, 5, 9])
def test_hard_mining_variant_matches_loop(k):
    q, r = _batch(seed=3)
    got = build_loss("soft_margin_triplet_hard", hard_k=k)(q, r).item()
    assert got == pytest.approx(brute_triplet(q, r, hard_k=min(k, 5)), rel=1e-9)
    # Keeping the hardest terms can only raise the mean.
    assert got >= build_loss("soft_margin_triplet")(q, r).item() - 1e-12


@pytest.mark.parametrize("k", [None, 1, 3, 6])
def test_count_diagonal_is_safas_sum_and_moves_only_the_value(k):
    q, r = _batch(seed=5)
    name, extra = ("soft_margin_triplet", {}) if k is None else ("soft_margin_triplet_hard", {"hard_k": k})
    q1, r1 = q.clone().requires_grad_(), r.clone().requires_grad_()
    got = build_loss(name, count_diagonal=True, **extra)(q1, r1)
    assert got.item() == pytest.approx(brute_triplet(q, r, hard_k=k, diagonal=True), rel=1e-9)
    if k is None:  # B log-2 terms over B(B-1): log 2 / (B-1) more, same gradients
        plain = build_loss(name)(q, r).item()
        assert got.item() == pytest.approx(plain + math.log(2) / 5, rel=1e-12)
        q2, r2 = q.clone().requires_grad_(), r.clone().requires_grad_()
        got.backward()
        build_loss(name)(q2, r2).backward()
        torch.testing.assert_close((q1.grad, r1.grad), (q2.grad, r2.grad), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("seed", [0, 4])
def test_semi_hard_matches_loop(seed):
    q, r = _batch(b=7, seed=seed)
    assert build_loss("semi_soft_tri_hard")(q, r).item() == pytest.approx(brute_semi_hard(q, r), rel=1e-9)


def test_semi_hard_picks_both_branches():
    # Pair 0's positive is far (violating negatives exist); pair 1's is close (none).
    q = F.normalize(torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]], dtype=torch.float64), dim=1)
    r = F.normalize(torch.tensor([[-1.0, 0.1, 0], [0, 1.0, 0.05], [0.2, 0, 1.0]], dtype=torch.float64), dim=1)
    assert build_loss("semi_soft_tri_hard", alpha=2.0)(q, r).item() == pytest.approx(
        brute_semi_hard(q, r, alpha=2.0), rel=1e-9)


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_infonce_matches_loop_and_learns_temperature(eps):
    q, r = _batch(seed=5)
    loss = build_loss("infonce", label_smoothing=eps).double()
    value = loss(q, r)
    scale = math.exp(loss.logit_scale.item())  # the float32-rounded 1/0.07
    assert value.item() == pytest.approx(brute_infonce(q, r, scale=scale, eps=eps), rel=1e-9)
    assert loss.logit_scale.item() == pytest.approx(math.log(1 / 0.07))
    value.backward()
    assert loss.logit_scale.grad is not None and loss.logit_scale.grad.abs().item() > 0


def test_gradients_flow_and_perfect_batch_is_low():
    q, r = _batch(seed=6)
    for name in LOSSES.names():
        qq = q.clone().requires_grad_(True)
        build_loss(name).double()(qq, r).backward()
        assert torch.isfinite(qq.grad).all() and qq.grad.abs().sum() > 0, name
        # Identical descriptors (well separated) should beat random ones.
        eye = torch.eye(6, dtype=torch.float64)
        assert build_loss(name).double()(eye, eye) < build_loss(name).double()(q, r), name


def test_errors():
    with pytest.raises(UnknownNameError, match="infonce"):
        build_loss("infonc")
    with pytest.raises(UsageError, match="bad arguments"):
        build_loss("infonce", gamma=3)
    with pytest.raises(UsageError, match="at least 2"):
        build_loss("infonce")(torch.ones(1, 4), torch.ones(1, 4))
    with pytest.raises(UsageError, match="equal shape"):
        build_loss("soft_margin_triplet")(torch.ones(3, 4), torch.ones(2, 4))


def brute_multi_similarity(q, r, alpha=1.0, beta=50.0, base=0.0, eps=0.1) -> float:
    x = list(q) + list(r)
    b, n = len(q), len(x)
    total = 0.0
    for i in range(n):
        sims = {j: float(x[i] @ x[j]) for j in range(n) if j != i}
        pos = [j for j in sims if j % b == i % b]
        neg = [j for j in sims if j % b != i % b]
        if eps is not None:
            weakest, strongest = min(sims[j] for j in pos), max(sims[j] for j in neg)
            neg = [j for j in neg if sims[j] + eps > weakest]
            pos = [j for j in pos if sims[j] - eps < strongest]
        total += math.log(1 + sum(math.exp(-alpha * (sims[j] - base)) for j in pos)) / alpha
        total += math.log(1 + sum(math.exp(beta * (sims[j] - base)) for j in neg)) / beta
    return total / n


@pytest.mark.parametrize("eps", [None, 0.1, 1.5])
def test_multi_similarity_matches_loop(eps):
    q, r = _batch(seed=8)
    got = build_loss("multi_similarity", epsilon=eps)(q, r).item()
    assert got == pytest.approx(brute_multi_similarity(q, r, eps=eps), rel=1e-9)


@pytest.mark.parametrize("model", ["mcgra", "asavg"])
def test_mcgra_and_asavg_card_losses_are_the_papers_formula(model, tmp_path):
    """The papers (no official code): L = log(1 + exp(gamma (d_pos - d_neg))), d Euclidean,
    gamma 10, every query with its B - 1 non-matching references and every reference with
    its B - 1 non-matching queries: 2B(B-1) triplets per batch of B = 8, averaged. ASA-VG's
    distances are pair-dependent (the query against the crop of each panorama aligned to
    it), so its loop takes a separate reference descriptor for every (query, reference)."""
    from geobench.train.batching import loss_options
    from geobench.train.config import resolve_config

    cfg = resolve_config(model, "unused", tmp_path / "run")  # the card's recipe
    loss = build_loss(cfg.loss, **loss_options(cfg)).double()
    b, d = 8, 16
    g = torch.Generator().manual_seed(5)
    q = F.normalize(torch.randn(b, d, generator=g, dtype=torch.float64), dim=1)
    crops = F.normalize(torch.randn(b, b, d, generator=g, dtype=torch.float64), dim=2)  # [i, j]
    if model == "mcgra":
        crops = crops[0].expand(b, b, d)  # one descriptor per reference, whatever the query
    qs, cs = q.tolist(), crops.tolist()

    def dist(i: int, j: int) -> float:  # query i against reference j (its crop aligned to i)
        return math.dist(qs[i], cs[i][j])

    triplets = []
    for a in range(b):
        for n in range(b):
            if n != a:
                triplets.append(math.log(1 + math.exp(10.0 * (dist(a, a) - dist(a, n)))))  # query anchor
                triplets.append(math.log(1 + math.exp(10.0 * (dist(a, a) - dist(n, a)))))  # reference anchor
    assert len(triplets) == 2 * b * (b - 1)
    expected = sum(triplets) / len(triplets)
    sim = torch.einsum("id,ijd->ij", q, crops)  # the (B, B) pair scores a pairwise model returns
    assert loss.from_similarity(sim).item() == pytest.approx(expected, rel=1e-12)
    if model == "mcgra":
        assert loss(q, crops[0]).item() == pytest.approx(expected, rel=1e-12)
