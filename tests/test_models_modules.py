"""Module-level tests: attention, alignment and aggregation blocks against their references."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from geobench.errors import UsageError
from geobench.models.aggregators import SAFA, SALAD, GeM, GlobalAvgPool, MixVPR
from geobench.models.asa import ASA, SFE, correlate_all, correlate_pairs, crop_circular
from geobench.models.attention import CBAM, GSRA, MCGRA, RGASpatial, make_attention, relation_stack

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def nparams(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


# --- MixVPR --------------------------------------------------------------------------
def test_mixvpr_param_count_at_mcgra_shape():
    m = MixVPR(1024, 7, 39, out_channels=1024, mix_depth=4, mlp_ratio=1, out_rows=4)
    assert nparams(m) == 1_651_296  # ≈ 1.651 M (reference/models.md §3.1)
    assert m.out_dim == 4096
    assert nparams(MixVPR(1024, 20, 20, 1024, 4, 1, 4)) == 2_337_604  # ≈ 2.338 M


def test_mixvpr_forward_matches_manual_formula():
    torch.manual_seed(0)
    m = MixVPR(6, 2, 3, out_channels=5, mix_depth=2, mlp_ratio=2, out_rows=3).double()
    x = torch.randn(2, 6, 2, 3, dtype=torch.double)
    z = x.flatten(2)
    for mixer in m.mix:
        ln, l1, _, l2 = mixer.mix
        z = z + l2(torch.relu(l1(F.layer_norm(z, (6,), ln.weight, ln.bias, ln.eps))))
    d = torch.einsum("bcn,dc->bdn", z, m.channel_proj.weight) + m.channel_proj.bias[:, None]
    o = torch.einsum("bdn,rn->bdr", d, m.row_proj.weight) + m.row_proj.bias
    ref = F.normalize(o.reshape(2, -1), dim=-1)
    torch.testing.assert_close(m(x), ref)


def test_mixvpr_refuses_other_sizes():
    with pytest.raises(UsageError, match="7x39"):
        MixVPR(8, 7, 39)(torch.randn(1, 8, 7, 40))


# --- SALAD ---------------------------------------------------------------------------
def test_salad_transport_marginals():
    torch.manual_seed(0)
    salad = SALAD(16, num_clusters=4, cluster_dim=3, use_token=False, dropout=0.0, sinkhorn_iters=100).double()
    n = 24
    scores = torch.randn(2, 4, n, dtype=torch.double) * 3
    p = salad.transport(scores)  # (B, m, n), dustbin dropped
    dust = 1 - p.sum(dim=1)  # each feature's column over m+1 rows sums to exactly 1
    assert (p >= 0).all() and (dust >= -1e-9).all()
    torch.testing.assert_close(p.sum(dim=2), torch.ones(2, 4, dtype=torch.double), atol=1e-6, rtol=0)
    torch.testing.assert_close(dust.sum(dim=1), torch.full((2,), float(n - 4), dtype=torch.double), atol=1e-5, rtol=0)
    # the published 3 iterations: columns exact, rows only roughly balanced
    salad.sinkhorn_iters = 3
    p3 = salad.transport(scores)
    assert (p3.sum(dim=1) <= 1 + 1e-9).all()
    assert p3.sum(dim=2).sub(1).abs().max() < 0.5


def test_salad_sinkhorn_matches_plain_domain_sinkhorn():
    torch.manual_seed(1)
    salad = SALAD(8, num_clusters=3, cluster_dim=2, use_token=False, dropout=0.0, sinkhorn_iters=5).double()
    n, m = 10, 3
    s = torch.randn(1, m, n, dtype=torch.double)
    k = torch.cat([s, salad.dust_bin.detach().double().expand(1, 1, n)], 1).exp()[0]
    a = torch.tensor([1.0] * m + [n - m], dtype=torch.double) / (n + m)
    b = torch.full((n,), 1.0 / (n + m), dtype=torch.double)
    u, v = torch.ones(m + 1, dtype=torch.double), torch.ones(n, dtype=torch.double)
    for _ in range(5):
        u = a / (k @ v)
        v = b / (k.t() @ u)
    ref = (u[:, None] * k * v[None, :] * (n + m))[:m]
    torch.testing.assert_close(salad.transport(s)[0], ref)


def test_salad_shapes_params_and_unit_norm():
    lrfr = SALAD(384, num_clusters=128, cluster_dim=64, use_token=False)
    assert nparams(lrfr) == 492_737 and lrfr.out_dim == 8192  # ≈ 0.493 M
    dino = SALAD(768, 64, 128, 256)
    assert nparams(dino) == 1_411_009 and dino.out_dim == 8448  # ≈ 1.41 M
    small = SALAD(8, num_clusters=4, cluster_dim=3, token_dim=5).eval()
    out = small(torch.randn(2, 8, 3, 4), token=torch.randn(2, 8))
    assert out.shape == (2, 17)
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(2))
    with pytest.raises(UsageError, match="more local features"):
        SALAD(8, num_clusters=16, cluster_dim=2, use_token=False)(torch.randn(1, 8, 3, 4))


# --- SAFA, GeM, GAP --------------------------------------------------------------------
def test_safa_matches_loop():
    torch.manual_seed(0)
    safa = SAFA(5, 2, 3, heads=2).double()
    x = torch.randn(2, 5, 2, 3, dtype=torch.double)
    for pooling in ("mean", "max"):
        safa.pooling = pooling
        out = safa(x)
        pooled = (x.mean(1) if pooling == "mean" else x.amax(1)).flatten(1)
        refs = []
        for b in range(2):
            descs = []
            for k in range(2):
                a = (pooled[b] @ safa.w1[k] + safa.b1[k]) @ safa.w2[k] + safa.b2[k]
                descs.append(x[b].flatten(1) @ a)
            refs.append(torch.cat(descs))  # head-major, as the official reshape
        torch.testing.assert_close(out, F.normalize(torch.stack(refs), dim=-1))
    assert safa.out_dim == 10
    with pytest.raises(UsageError, match="mean | max"):
        SAFA(5, 2, 3, pooling="sum")


def test_gem_and_gap():
    x = torch.rand(2, 4, 3, 5) + 0.1
    torch.testing.assert_close(GlobalAvgPool()(x), x.mean(dim=(2, 3)))
    gem = GeM(p=1.0)
    torch.testing.assert_close(gem(x), x.mean(dim=(2, 3)))
    gem3 = GeM(p=3.0)
    torch.testing.assert_close(gem3(x), x.pow(3).mean(dim=(2, 3)).pow(1 / 3))
    assert GlobalAvgPool(4, norm=True)(x).shape == (2, 4)


# --- attention ---------------------------------------------------------------------------
def test_relation_stack_layout():
    theta, phi = torch.randn(1, 3, 6), torch.randn(1, 3, 6)
    r = theta[0].t() @ phi[0]
    s = relation_stack(theta, phi, 2, 3)
    assert s.shape == (1, 12, 2, 3)
    j = 4  # node (1, 1)
    torch.testing.assert_close(s[0, :6, 1, 1], r[j, :])
    torch.testing.assert_close(s[0, 6:, 1, 1], r[:, j])


@pytest.mark.parametrize("deformable", [True, False])
@pytest.mark.parametrize("pool", ["sum", "cat"])
def test_mcgra_shapes_and_gradients(deformable, pool):
    torch.manual_seed(0)
    m = MCGRA(32, 4, 6, deformable=deformable, pool=pool)
    x = torch.randn(2, 32, 4, 6, requires_grad=True)
    a = m.attention_map(x)
    assert a.shape == (2, 1, 4, 6) and (a >= 0).all() and (a <= 1).all()
    y = m(x)
    assert y.shape == x.shape
    y.square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for name, p in m.named_parameters():
        assert p.grad is not None, name
    with pytest.raises(UsageError):
        m(torch.randn(1, 32, 4, 7))


def test_mcgra_deformable_offsets_start_at_zero_and_receive_gradient():
    torch.manual_seed(0)
    m = MCGRA(16, 3, 5, deformable=True)
    assert m.ctx3.offset.weight.abs().sum() == 0
    m(torch.randn(2, 16, 3, 5)).sum().backward()
    assert m.ctx5.offset.weight.grad.abs().sum() > 0


def test_cbam_rga_shapes_and_param_counts():
    x = torch.randn(2, 64, 3, 5)
    assert CBAM(64)(x).shape == x.shape
    assert nparams(CBAM(64)) == 2 * 64 * 4 + 49 * 2
    assert nparams(RGASpatial(1024, 7, 39)) == 412_770  # ≈ 0.413 M (reference/models.md §8.4)
    assert RGASpatial(64, 3, 5)(x).shape == x.shape
    assert isinstance(make_attention("none", 64, 3, 5), torch.nn.Identity)
    with pytest.raises(UsageError, match="unknown attention"):
        make_attention("bogus", 64, 3, 5)


def test_gsra_shape_params_and_shuffle():
    assert nparams(GSRA(384, 24, 24)) == 333_158  # ≈ 0.333 M
    g = GSRA(8, 2, 3, groups=4).eval()
    x = torch.randn(2, 8, 2, 3)
    y = g(x)
    assert y.shape == x.shape
    # channel shuffle: output channel j*G + g comes from group g, channel j
    with torch.no_grad():
        g.relation[3].bias.fill_(50.0)  # σ(g) -> 1, relation branch saturated
        g.coord.weight.zero_()
        g.coord.bias.fill_(50.0)  # coordinate gates -> 1
        y = g(x)
    xg = x.reshape(2, 4, 2, 2, 3)
    normed = F.group_norm(xg.reshape(8, 2, 2, 3), 2, g.norm.weight, g.norm.bias, g.norm.eps).reshape(2, 4, 2, 2, 3)
    torch.testing.assert_close(y, normed.transpose(1, 2).reshape(2, 8, 2, 3), atol=1e-5, rtol=1e-5)


# --- SFE and ASA -------------------------------------------------------------------------
def test_sfe_kernels_fixed_and_residual():
    sfe = SFE()
    assert "kernels" not in dict(sfe.named_parameters())
    assert not sfe.kernels.requires_grad
    kx = sfe.kernels[0, 0]
    torch.testing.assert_close(kx, torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]]))
    torch.testing.assert_close(sfe.kernels[1, 0], kx.t())
    x = torch.randn(2, 4, 6, 7, requires_grad=True)
    y = sfe(x)
    y.sum().backward()
    assert sfe.kernels.grad is None and torch.isfinite(x.grad).all()
    sfe.eval()
    with torch.no_grad():
        mask = sfe.line_mask(x)
        torch.testing.assert_close(sfe(x), x * (1 + mask))
    # a flat map has no lines: mask = ReLU(BN(sqrt(eps))) is uniform
    flat = torch.ones(1, 4, 5, 5)
    m = sfe.line_mask(flat)[0, 0, 1:-1, 1:-1]
    assert torch.allclose(m, m[0, 0].expand_as(m))


def test_asa_recovers_known_circular_shift():
    torch.manual_seed(0)
    p = torch.randn(3, 8, 2, 20)
    shifts = torch.tensor([0, 7, 17])  # 17 wraps around the seam
    q = crop_circular(p, shifts, 6)
    torch.testing.assert_close(q[2, ..., :3], p[2, ..., 17:])
    torch.testing.assert_close(q[2, ..., 3:], p[2, ..., :3])
    asa = ASA()
    aligned, s = asa(q, p)
    assert s.tolist() == shifts.tolist()
    torch.testing.assert_close(aligned, q)
    assert asa.align_all(q, p).diagonal().tolist() == shifts.tolist()


def test_correlation_matches_direct_sum():
    torch.manual_seed(0)
    q, p = torch.randn(2, 3, 2, 4, dtype=torch.double), torch.randn(3, 3, 2, 9, dtype=torch.double)
    c = correlate_all(q, p, normalize=False)
    assert c.shape == (2, 3, 9)
    pt = torch.cat([p, p[..., :3]], dim=-1)
    for i in range(2):
        for j in range(3):
            for s in range(9):
                ref = (q[i] * pt[j, ..., s : s + 4]).sum()
                assert math.isclose(float(c[i, j, s]), float(ref), rel_tol=1e-6, abs_tol=1e-6)
    torch.testing.assert_close(correlate_pairs(q, p[:2], normalize=False), c[[0, 1], [0, 1]].float())


def test_asa_gradient_reaches_panorama_and_refuses_bad_shapes():
    p = torch.randn(2, 4, 3, 10, requires_grad=True)
    q = torch.randn(2, 4, 3, 4, requires_grad=True)
    aligned, _ = ASA()(q, p)
    aligned.sum().backward()
    assert p.grad.abs().sum() > 0
    with pytest.raises(UsageError, match="ASA"):
        ASA()(torch.randn(1, 4, 2, 4), torch.randn(1, 4, 3, 10))
