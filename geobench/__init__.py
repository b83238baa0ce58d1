"""geobench: cross-view and visual geo-localization benchmarks, end to end."""

__version__ = "0.1.0"
