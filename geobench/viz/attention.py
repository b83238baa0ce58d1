"""`geobench viz attention`: where a trained model looks, for a query and its positive.

Two kinds of maps, for both branches of the model:
- the model's own spatial attention where it has one: MC_GRA's fused map (σ of its gate),
  CBAM's spatial map, GSRA's global-relation map (σ(g), averaged over its groups);
- Grad-CAM (Selvaraju et al., ICCV 2017) of the descriptor similarity between the query
  and its positive on the backbone's last feature map: ReLU(Σ_c mean(∂s/∂A_c) · A_c).
Maps are overlaid on the images exactly as the model saw them (resized, polar-transformed).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from geobench.errors import DataError, UsageError
from geobench.viz import figure as F


@dataclass
class BranchMaps:
    image: np.ndarray                   # RGB uint8 as the model saw it
    attention: dict[str, np.ndarray]    # module label -> (h, w) map in [0, 1]
    gradcam: np.ndarray                 # (h, w), >= 0


def _attention_hooks(model: Any, sink: list[tuple[str, Any]]) -> list[Any]:
    """Forward hooks that append (label, (B, h, w) map) for every attention module run."""
    import torch

    from geobench.models.attention import CBAM, GSRA, MCGRA

    handles = []
    for module in model.modules():
        if isinstance(module, MCGRA):
            handles.append(module.gate.register_forward_hook(
                lambda m, i, o, lab="MC_GRA spatial map": sink.append(
                    (lab, torch.sigmoid(o[:, 0]).detach()))))
        elif isinstance(module, CBAM):
            handles.append(module.spatial.register_forward_hook(
                lambda m, i, o, lab="CBAM spatial map": sink.append((lab, o[:, 0].detach()))))
        elif isinstance(module, GSRA):
            def gsra(m: Any, i: Any, o: Any, lab: str = "GSRA relation map",
                     groups: int = module.groups) -> None:
                g = torch.sigmoid(o[:, 0]).detach()
                sink.append((lab, g.reshape(-1, groups, *g.shape[-2:]).mean(1)))

            handles.append(module.relation.register_forward_hook(gsra))
    return handles


def branch_maps(model: Any, query: Any, q_view: str, reference: Any, r_view: str
                ) -> tuple[float, dict[str, tuple[dict[str, np.ndarray], np.ndarray]]]:
    """Similarity of one (query, reference) pair and, per branch, its attention maps and
    Grad-CAM. `query`/`reference` are normalised (3, H, W) tensors."""
    import torch

    backbones = model.backbones()
    if not backbones:
        raise UsageError(f"model {model.model_name!r} has no backbone module to explain")
    feats: list[Any] = []

    def keep(m: Any, i: Any, o: Any) -> None:
        if o.requires_grad:
            o.retain_grad()
        feats.append(o)

    attn: list[tuple[str, Any]] = []
    handles = [b.register_forward_hook(keep) for b in backbones]
    handles += _attention_hooks(model, attn)
    out: dict[str, tuple[dict[str, np.ndarray], np.ndarray]] = {}
    try:
        model.eval()
        model.zero_grad(set_to_none=True)
        with torch.enable_grad():
            eq = model.embed(query[None].requires_grad_(False), q_view)
            q_feat, q_attn = feats[-1], list(attn)
            feats.clear()
            attn.clear()
            er = model.embed(reference[None], r_view)
            r_feat, r_attn = feats[-1], list(attn)
            sim = (eq * er).sum()
            sim.backward()
        for branch, feat, maps in (("query", q_feat, q_attn), ("reference", r_feat, r_attn)):
            if feat.grad is None:
                raise DataError(f"no gradient reached the {branch} backbone; the model's "
                                f"descriptor does not depend on its feature map")
            weights = feat.grad.mean(dim=(2, 3), keepdim=True)
            cam = torch.relu((weights * feat).sum(1))[0].detach().float().cpu().numpy()
            named: dict[str, np.ndarray] = {}
            for lab, m in maps:  # a branch may run several attention modules of one kind
                key = lab if lab not in named else f"{lab} {sum(k.startswith(lab) for k in named) + 1}"
                named[key] = m[0].float().cpu().numpy()
            out[branch] = (named, cam)
    finally:
        for h in handles:
            h.remove()
    return float(sim.detach()), out


def _pair_rows(prepared: Any, split: str, model: Any, n: int) -> list[tuple[Any, Any, Any, Any]]:
    """(query row, positive row, query source, reference source) of the first n queries."""
    from geobench.eval.protocols import eval_sets, get_protocol
    from geobench.train.evalplan import default_protocol, forced_view, model_view

    card = model.card
    proto = get_protocol(default_protocol(prepared))
    sets = eval_sets(prepared, split, proto,
                     query_view=forced_view(prepared, split, "query", card.query_view,
                                            proto.query_views),
                     reference_view=forced_view(prepared, split, "reference",
                                                card.reference_view, proto.reference_views))
    q_src = model_view(card, str(sets.queries["view"].iloc[0]))
    r_src = model_view(card, str(sets.references["view"].iloc[0]))
    rows = []
    for qi in range(sets.positives.n_rows):
        pos = sets.positives.row(qi)
        if len(pos):
            rows.append((sets.queries.iloc[qi], sets.references.iloc[int(pos[0])], q_src, r_src))
        if len(rows) == n:
            break
    if not rows:
        raise DataError(f"{prepared.root}: no {split} query has a positive to explain")
    return rows


def attention_figures(run: str | Path, data: str | Path, out_dir: str | Path, *,
                      queries: int = 4, split: str = "test", checkpoint: str | None = None,
                      fmt: str = "png") -> list[Path]:
    """One figure per query: rows query / positive, columns image, attention maps, Grad-CAM."""
    from matplotlib import rc_context

    from geobench.prepared import read_prepared
    from geobench.train.checkpoint import BEST, LAST
    from geobench.train.data import ImageDataset, card_size, read_image, to_model_view
    from geobench.train.runeval import load_run_model

    if queries < 1:
        raise UsageError(f"--queries {queries}: explain at least one query")
    fmt = fmt.lower()
    if fmt not in F.FORMATS:
        raise UsageError(f"--format {fmt!r}: use one of {', '.join(F.FORMATS)}")
    run = Path(run)
    path = Path(checkpoint) if checkpoint else (run / BEST if (run / BEST).is_file() else run / LAST)
    if not path.is_file():
        raise DataError(f"{path}: no checkpoint; train with `geobench train MODEL --out {run}` "
                        f"or pass --checkpoint FILE")
    from geobench.guard import check_output

    # a file, or a folder inside (or holding) the prepared dataset, is refused
    out_dir = check_output(out_dir, inputs={"--data": data})
    model, _ = load_run_model(path, "cpu")
    prepared = read_prepared(data)
    written = []
    for q_row, r_row, q_src, r_src in _pair_rows(prepared, split, model, queries):
        branches = []
        for row, src in ((q_row, q_src), (r_row, r_src)):
            p = str(prepared.resolve(row["path"]))
            shown = to_model_view(read_image(p), src, card_size(model.card, src.model_view), p)
            branches.append((shown, ImageDataset([p], src, model.card)[0], src.model_view))
        sim, maps = branch_maps(model, branches[0][1], branches[0][2], branches[1][1],
                                branches[1][2])
        panels = [BranchMaps(branches[i][0], *maps[b]) for i, b in enumerate(("query", "reference"))]
        labels = sorted({lab for p in panels for lab in p.attention})
        ncol = 2 + len(labels)
        aspect = max(p.image.shape[1] / p.image.shape[0] for p in panels)
        fig = F.new_figure(min(22.0, 2.2 * max(1.0, aspect / 1.8) * ncol + 0.4), 2 * 2.3 + 0.7, 100)
        with rc_context(F.STYLE):
            for i, (panel, uid) in enumerate(zip(panels, (q_row["uid"], r_row["uid"]), strict=True)):
                role = "query" if i == 0 else "positive"
                cells = [(f"{role} {uid}", panel.image)]
                cells += [(lab, F.overlay(panel.image, panel.attention[lab]) if lab in panel.attention
                           else None) for lab in labels]
                cells.append(("Grad-CAM", F.overlay(panel.image, panel.gradcam)))
                for j, (title, img) in enumerate(cells):
                    ax = fig.add_subplot(2, ncol, i * ncol + j + 1)
                    ax.set_axis_off()
                    ax.set_title(title, fontsize=8)
                    if img is None:
                        ax.text(0.5, 0.5, "not in this branch", ha="center", va="center",
                                transform=ax.transAxes, fontsize=7)
                    else:
                        ax.imshow(img)
            fig.suptitle(f"{model.model_name}: query {q_row['uid']} and its positive "
                         f"{r_row['uid']} (similarity {sim:.3f})", fontsize=9)
            fig.tight_layout()
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(q_row["uid"]))
        written.append(F.save(fig, out_dir / f"attention_{safe}.{fmt}", fmt))
    return written
