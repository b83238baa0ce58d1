"""Figures beyond recall curves: retrieval examples (`examples`), attention maps and
Grad-CAM (`attention`); `figure` holds the shared tiles, frames and savers."""
