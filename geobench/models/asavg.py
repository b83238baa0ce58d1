"""ASA-VG: perspective query against 360° panorama reference (LSKNet + SFE + ASA + MixVPR).

One backbone embeds both views [A: shared]; SFE re-weights the stage-2 output; ASA crops
the stage-3 panorama map at the horizontal offset best correlated with the query map and
a shared MixVPR aggregates query and crop. Because the crop depends on the query, the
exact similarity is pair-dependent:

* `forward(q, r)` aligns each panorama to its own query (the matching pair);
* `similarity_matrix(q, r)` aligns every panorama to every query (B×B, the paper's
  training, where negatives are also compared at their best-aligned region; the card's
  `pairwise_training` makes the training engine hand it to the loss);
* `embed(pano, "ground")` is a query-independent shortlist descriptor (mean of the
  MixVPR descriptors of `n_crops` evenly spaced windows); `pairwise_score`, `rerank` and
  `score_pairs` rescore with the real alignment, so exhaustive search stays tractable
  (`geobench eval --rerank K` re-orders a global-search shortlist of K with them).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from geobench.errors import UsageError
from geobench.models.asa import ASA, SFE, crop_circular
from geobench.models.backbones.base import Backbone
from geobench.models.base import GeoModel
from geobench.models.registry import ModelCard


class ASAVGModel(GeoModel):
    fixed_size = True
    pairwise = True

    def __init__(
        self,
        card: ModelCard,
        backbone: Backbone,
        aggregator: nn.Module,
        sfe_after_stage: int = 2,
        align_normalize: bool = True,
        n_crops: int | None = None,
        chunk: int = 256,
        *,
        sfe: bool = True,
        asa: bool = True,
        reference_aggregator: nn.Module | None = None,
        query_map_width: int | None = None,
    ) -> None:
        super().__init__(card)
        self.backbone = backbone
        self.sfe = SFE() if sfe else None
        self.sfe_after_stage = sfe_after_stage
        self.asa = ASA(normalize=align_normalize)
        self.aggregator = aggregator
        # asa=False (ablation): no alignment, the panorama map is aggregated whole (by its own
        # head when the query's is size-fixed); scores are then plain inner products.
        self.aligned = asa
        self.pairwise = asa
        self.reference_aggregator = reference_aggregator
        self.query_map_width = query_map_width
        self.n_crops = n_crops
        self.chunk = chunk

    # --- feature maps -----------------------------------------------------------------
    def features(self, images: torch.Tensor, view: str) -> torch.Tensor:
        """Stage-3 feature map (B, C, H, W) of a batch of one view (input of ASA)."""
        self.check_input_size(images, view)
        return self._features(images)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(self.backbone.num_stages):
            x = self.backbone.run_stage(i, x)
            if self.sfe is not None and i + 1 == self.sfe_after_stage:
                x = self.sfe(x)
        return x

    def _describe(self, maps: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.aggregator(maps).float(), dim=-1)

    def _crop_offsets(self, wp: int, wq: int) -> torch.Tensor:
        n = self.n_crops or max(math.ceil(wp / wq), 1)
        return torch.tensor([round(k * wp / n) for k in range(n)])

    def _panorama_descriptor(self, p: torch.Tensor, wq: int) -> torch.Tensor:
        offs = self._crop_offsets(p.shape[-1], wq).to(p.device)
        b, n = p.shape[0], offs.numel()
        crops = crop_circular(p.repeat_interleave(n, dim=0), offs.repeat(b), wq)
        return self._describe(crops).view(b, n, -1).mean(dim=1)

    def _query_width(self) -> int:
        if self.query_map_width is not None:
            return self.query_map_width
        return self.aggregator.in_w  # type: ignore[return-value]

    def _whole_panorama(self, p: torch.Tensor) -> torch.Tensor:
        head = self.reference_aggregator if self.reference_aggregator is not None else self.aggregator
        return F.normalize(head(p).float(), dim=-1)

    # --- GeoModel contract --------------------------------------------------------------
    def encode(self, images: torch.Tensor, branch: str) -> torch.Tensor:
        f = self._features(images)
        if branch == "query":
            return self._describe(f)
        if not self.aligned:
            return self._whole_panorama(f)
        return self._panorama_descriptor(f, self._query_width())

    def forward(self, query_images: torch.Tensor, reference_images: torch.Tensor,
                matrix: bool = False) -> tuple[torch.Tensor, torch.Tensor] | torch.Tensor:
        if matrix:
            return self.similarity_matrix(query_images, reference_images)
        if not self.aligned:
            return super().forward(query_images, reference_images)
        fq = self.features(query_images, self.card.query_view)
        fp = self.features(reference_images, self.card.reference_view)
        aligned, _ = self.asa(fq, fp)
        return self._describe(fq), self._describe(aligned)

    def similarity_matrix(self, query_images: torch.Tensor, reference_images: torch.Tensor) -> torch.Tensor:
        """S[i, j] = <d(q_i), d(crop of p_j aligned to q_i)> for a training batch: (B, B).

        One FFT correlation for all B² pairs, then the B² crops through the aggregator.
        """
        if not self.aligned:
            return super().similarity_matrix(query_images, reference_images)
        fq = self.features(query_images, self.card.query_view)
        fp = self.features(reference_images, self.card.reference_view)
        nq, np_ = fq.shape[0], fp.shape[0]
        offs = self.asa.align_all(fq, fp)  # (Nq, Np), no gradient through the argmax
        crops = crop_circular(fp.repeat(nq, 1, 1, 1), offs.reshape(-1), fq.shape[-1])
        d = self._describe(crops).view(nq, np_, -1)
        return torch.einsum("ijd,id->ij", d, self._describe(fq))

    def describe_maps(self, q_feats: torch.Tensor) -> torch.Tensor:
        """Descriptors of query maps from `features` (score_pairs' q_desc)."""
        return self._describe(q_feats)

    def score_pairs(self, q_feats: torch.Tensor, r_feats: torch.Tensor,
                    q_desc: torch.Tensor | None = None) -> torch.Tensor:
        """Aligned score of row-matched pairs (query map i, panorama map i): (P,).

        The building block of memory-bounded re-ranking: the caller streams any set of
        (query, reference) pairs through it in batches. q_desc: the queries' descriptors
        if already known (saves an aggregator pass).
        """
        if q_feats.shape[0] != r_feats.shape[0]:
            raise ValueError("score_pairs needs as many panorama maps as query maps")
        dq = self._describe(q_feats) if q_desc is None else q_desc
        if not self.aligned:
            return (self._whole_panorama(r_feats) * dq).sum(dim=-1)
        offs = self.asa.offsets(q_feats, r_feats)
        return (self._describe(crop_circular(r_feats, offs, q_feats.shape[-1])) * dq).sum(dim=-1)

    # --- pair-dependent retrieval ----------------------------------------------------------
    def _aligned_scores(self, fq: torch.Tensor, fp: torch.Tensor, cand: torch.Tensor) -> torch.Tensor:
        """Scores of query i against panoramas cand[i] (Nq, K), each aligned to query i."""
        dq = self._describe(fq)
        if not self.aligned:  # no alignment: the whole-panorama descriptors' inner products
            dp = self._whole_panorama(fp)
            return torch.stack([dp[cand[i]] @ dq[i] for i in range(fq.shape[0])])
        wq = fq.shape[-1]
        rows = []
        for i in range(fq.shape[0]):
            p = fp[cand[i]]
            offs = self.asa.align_all(fq[i : i + 1], p)[0]
            scores = []
            for s in range(0, p.shape[0], self.chunk):
                crops = crop_circular(p[s : s + self.chunk], offs[s : s + self.chunk], wq)
                scores.append(self._describe(crops) @ dq[i])
            rows.append(torch.cat(scores))
        return torch.stack(rows)

    def pairwise_score(self, q_feats: torch.Tensor, r_feats: torch.Tensor) -> torch.Tensor:
        """Exact aligned similarity of every query map against every panorama map: (Nq, Nr).

        q_feats, r_feats come from `features`. Costs Nq·Nr aggregator passes: use `rerank`
        on a shortlist for large galleries.
        """
        cand = torch.arange(r_feats.shape[0], device=r_feats.device).expand(q_feats.shape[0], -1)
        return self._aligned_scores(q_feats, r_feats, cand)

    def rerank(
        self, q_feats: torch.Tensor, r_feats: torch.Tensor, shortlist: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Re-order each query's shortlist (Nq, K reference rows) by aligned score.

        Returns (indices (Nq, K) best first, scores (Nq, K)).
        """
        shortlist = torch.as_tensor(shortlist, dtype=torch.long, device=r_feats.device)
        if shortlist.dim() != 2 or shortlist.shape[0] != q_feats.shape[0]:
            raise UsageError(
                f"rerank needs a shortlist of shape (n_query={q_feats.shape[0]}, K); got {tuple(shortlist.shape)}."
            )
        if shortlist.numel() and (shortlist.min() < 0 or shortlist.max() >= r_feats.shape[0]):
            raise UsageError(f"rerank shortlist indices must lie in [0, {r_feats.shape[0]}).")
        scores = self._aligned_scores(q_feats, r_feats, shortlist)
        order = scores.argsort(dim=1, descending=True)
        return shortlist.gather(1, order), scores.gather(1, order)
