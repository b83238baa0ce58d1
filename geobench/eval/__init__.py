"""Evaluation: exact memory-bounded search, protocols, metrics and the results files.

Where things are:
- `csr`: ground-truth links per query; `plan`: block sizes and the canonical pair scores;
  `blocks`: the per-block passes (numpy on CPU, torch on GPU); `search`: the exact search
  (ranks of the best positive and a merged top-K).
- `protocols`: which images are queries/references and the R@1% rule of each protocol.
- `ties`: how tied scores count (expected value over all orderings, or the bounds):
  recall@K, curves, hit rate and AP under a tie policy.
- `metrics`: the curve length, University-1652 AP terms, metre errors.
- `evaluate`: descriptors + links + protocol -> metrics; `features`/`results`: the
  features.h5 input and the results.h5/metrics.csv outputs; `records`: what they share.
"""
