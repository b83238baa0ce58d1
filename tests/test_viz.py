"""geobench viz examples|attention and report --html, checked as a reader sees them."""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from tests._train_world import write_world

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """A tiny world and hand-made descriptors: query 0 ranks its positive 3rd, the others 1st."""
    from geobench.eval.csr import CSR
    from geobench.eval.evaluate import EvalOptions, evaluate_features
    from geobench.eval.features import write_features
    from geobench.prepared import read_prepared

    root = tmp_path_factory.mktemp("viz")
    ds = write_world(root, n_train=2, n_test=6)
    prepared = read_prepared(ds)
    q = prepared.select(split="test", role="query")
    r = prepared.select(split="test", role="reference")
    n = len(q)
    ref = np.eye(n, 8, dtype=np.float32)
    qry = ref.copy()
    qry[0] = 0.2 * ref[0] + 0.7 * ref[1] + 0.6 * ref[2]  # r1 > r2 > r0 for query 0
    qry /= np.linalg.norm(qry, axis=1, keepdims=True)
    write_features(root / "f.h5", qry, ref, CSR.from_lists([[i] for i in range(n)]),
                   query_uids=list(q["uid"]), reference_uids=list(r["uid"]),
                   attrs={"split": "test", "dataset": "tinyworld", "model": "handmade",
                          "data": str(ds.resolve())})
    summary = evaluate_features(root / "f.h5", root / "runs" / "handmade", EvalOptions(protocol="pairs"))
    assert summary.result.ranks.tolist() == [2, 0, 0, 0, 0, 0]
    return root, ds, summary.results_path.parent, list(q["uid"]), list(r["uid"])


def _frame_colour(png: np.ndarray, box: tuple[int, int, int, int]) -> tuple[int, int, int]:
    """Median colour of a thin strip inside the tile's top border."""
    x0, y0, x1, _ = box
    strip = png[y0 + 1:y0 + 3, x0 + (x1 - x0) // 3:x0 + 2 * (x1 - x0) // 3]
    return tuple(int(v) for v in np.median(strip.reshape(-1, 3), axis=0))


def _kind_of(rgb: tuple[int, int, int]) -> str:
    r, g, b = rgb
    if g > 120 and r < 80 and b < 100:
        return "positive"
    if r > 180 and g < 80 and b < 80:
        return "negative"
    if r > 200 and g > 150 and b < 80:
        return "semi_positive"
    return f"unknown {rgb}"


def test_examples_frames_read_back_from_pixels(evaluated, tmp_path):
    import cv2

    from geobench.viz.examples import load_examples, render_examples

    _, _, results, qids, rids = evaluated
    ex = load_examples(results, queries=3, k=3, select="worst")
    assert [row.query.uid for row in ex.rows] == [qids[0], qids[1], qids[2]]
    assert [t.uid for t in ex.rows[0].references] == [rids[1], rids[2], rids[0]]
    path, boxes = render_examples(ex, tmp_path / "grid.png")
    png = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    assert png.shape[0] > 300 and png.shape[1] > 600
    seen = [[_kind_of(_frame_colour(png, box)) for box, kind in row if kind != "query"]
            for row in boxes]
    assert seen[0] == ["negative", "negative", "positive"]  # the worst query: positive 3rd
    assert seen[1][0] == "positive" and seen[1][1:] == ["negative", "negative"]


def test_examples_best_random_and_named_queries(evaluated):
    from geobench.viz.examples import load_examples

    _, _, results, qids, _ = evaluated
    best = load_examples(results, queries=2, k=1, select="best")
    assert [r.rank for r in best.rows] == [0, 0]
    a = load_examples(results, queries=3, k=1, select="random", seed=4)
    b = load_examples(results, queries=3, k=1, select="random", seed=4)
    assert [r.query.uid for r in a.rows] == [r.query.uid for r in b.rows]
    named = load_examples(results, query_uids=[qids[3]], k=2)
    assert [r.query.uid for r in named.rows] == [qids[3]]


def test_missing_image_is_a_grey_tile(evaluated, tmp_path):
    import cv2

    from geobench.viz import figure as F
    from geobench.viz.examples import load_examples, render_examples

    root, _, results, qids, _ = evaluated
    image = root / "raw" / "aerial" / "test1.png"  # reference 1, query 0's top-1
    aside = tmp_path / "aside.png"
    shutil.move(image, aside)
    try:
        ex = load_examples(results, query_uids=[qids[0]], k=2)
        path, boxes = render_examples(ex, tmp_path / "grid.png")
    finally:
        shutil.move(aside, image)
    png = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    (x0, y0, _, _), kind = boxes[0][1]
    assert kind == "negative"
    inner = png[y0 + 12:y0 + 20, x0 + 12:x0 + 20].reshape(-1, 3)
    assert np.abs(inner.astype(int) - np.array(F.GREY)).max() <= 3


def test_examples_cli_formats_and_errors(evaluated, invoke, tmp_path):
    _, ds, results, _, _ = evaluated
    for ext, magic in (("pdf", b"%PDF"), ("svg", b"<?xml")):
        res = invoke("viz", "examples", results, "--out", tmp_path / f"g.{ext}", "--k", "2",
                     "--queries", "2", "-q")
        assert res.exit_code == 0, res.output
        assert (tmp_path / f"g.{ext}").read_bytes().startswith(magic)
    cases = [
        (["--out", tmp_path], "is a directory"),
        (["--out", tmp_path / "g.gif"], "unsupported figure format 'gif'"),
        (["--out", tmp_path / "g.png", "--k", "500"], "stores only the top"),
        (["--out", tmp_path / "g.png", "--select", "middle"], "--select 'middle'"),
        (["--out", tmp_path / "g.png", "--query", "nope"], "--query nope: not a query"),
    ]
    for extra, message in cases:
        res = invoke("viz", "examples", results, *extra)
        assert res.exit_code == 2, res.output
        assert message in res.output and "Traceback" not in res.output


def test_attention_maps_of_a_tiny_mcgra(tmp_path):
    """MC_GRA's own map and Grad-CAM, for both branches, on the input the model sees."""
    import cv2
    import torch

    import geobench.models.zoo  # noqa: F401
    from geobench.train import cards
    from geobench.train.checkpoint import save_checkpoint
    from geobench.viz.attention import attention_figures, branch_maps

    torch.manual_seed(0)
    # 64x256 (not the preset's 32x176): a 2x11 map of a random network can have no
    # positive Grad-CAM cell at all, which would test nothing
    size = {"ground": (64, 256), "polar": (64, 256)}
    model = cards.build("mcgra", "tiny", {"input_size": size})
    h, w = model.card.input_size["ground"]
    q = torch.randn(3, h, w)
    r = torch.randn(3, h, w)
    sim, maps = branch_maps(model, q, "ground", r, "polar")
    assert -1.0 <= sim <= 1.0
    for branch in ("query", "reference"):
        attention, cam = maps[branch]
        assert list(attention) == ["MC_GRA spatial map"]
        a = attention["MC_GRA spatial map"]
        assert a.ndim == 2 and 0.0 <= a.min() and a.max() <= 1.0
        assert cam.shape == a.shape and cam.min() >= 0 and cam.max() > 0
    ds = write_world(tmp_path, n_train=1, n_test=2, pano_size=(h, w), aerial_size=64)
    run = tmp_path / "run"
    run.mkdir()
    save_checkpoint(run / "checkpoint.pt", {"model": "mcgra", "model_args": {"preset": "tiny",
                                                                             "input_size": size},
                                            "model_state": model.state_dict(), "step": 0})
    paths = attention_figures(run, ds, tmp_path / "att", queries=1)
    assert [p.name for p in paths] == ["attention_q1.png"]
    img = cv2.imread(str(paths[0]))
    assert img.shape[0] > 300 and img.std() > 10


def test_html_report_text_and_files(evaluated, invoke, tmp_path):
    root, _, _, _, _ = evaluated
    out = tmp_path / "report.html"
    res = invoke("report", root / "runs", "--paper", "cvusa", "--html", out, "-q")
    assert res.exit_code == 0, res.output
    text = out.read_text()
    assert "<table>" in text and "handmade" in text and "(K=1)" in text
    assert text.count("data:image/png;base64,") == 2  # curves + one run's examples
    assert "http://" not in text and "https://" not in text and "<script" not in text
    bad = invoke("report", root / "runs", "--html", tmp_path / "report.txt")
    assert bad.exit_code == 2 and ".html file name" in bad.output


@pytest.mark.skipif(shutil.which("chromium") is None,
                    reason="no chromium on PATH (apt-get install chromium) to render the report")
def test_html_report_in_a_headless_browser(evaluated, invoke, tmp_path):
    import cv2

    root, _, _, _, _ = evaluated
    out = tmp_path / "report.html"
    assert invoke("report", root / "runs", "--html", out, "-q").exit_code == 0
    flags = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             f"--user-data-dir={tmp_path / 'profile'}"]
    shot = tmp_path / "shot.png"
    subprocess.run([*flags, "--window-size=1200,1800", f"--screenshot={shot}", out.as_uri()],
                   check=True, capture_output=True, timeout=120)
    img = cv2.imread(str(shot))
    assert img is not None and img.shape[:2] == (1800, 1200)
    assert (img < 250).any(axis=2).mean() > 0.05  # more than a blank page
    # The rendered page shows frames of the examples figure: green and red pixels.
    rgb = img[..., ::-1].astype(int)
    green = (rgb[..., 1] > 120) & (rgb[..., 0] < 80) & (rgb[..., 2] < 100)
    red = (rgb[..., 0] > 180) & (rgb[..., 1] < 80) & (rgb[..., 2] < 80)
    assert green.sum() > 200 and red.sum() > 200
    dom = subprocess.run([*flags, "--dump-dom", out.as_uri()], check=True, capture_output=True,
                         text=True, timeout=120).stdout
    assert "Recall@K curves" in dom and "R@1%" in dom and "handmade" in dom


def test_training_logs_to_tensorboard(invoke, tmp_path):
    """--tensorboard mirrors log.csv: per-step loss/lr, per-epoch recall, an examples figure."""
    pytest.importorskip("tensorboard", reason="tensorboard is in the [test] and [tb] extras")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from tests._train_world import register_test_model

    name = register_test_model()
    world = write_world(tmp_path / "w", n_train=12, n_test=6)
    run = tmp_path / "run"
    res = invoke("train", name, "--data", world, "--out", run, "--epochs", "2", "--workers", "0",
                 "--eval-every", "1", "--tensorboard", "--quiet")
    assert res.exit_code == 0, res.output
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0}).Reload()
    tags = events.Tags()
    assert {"train/loss_step", "train/lr", "epoch/loss", "eval/r@1"} <= set(tags["scalars"])
    import csv

    log = list(csv.DictReader((run / "log.csv").open()))
    assert [e.step for e in events.Scalars("eval/r@1")] == [int(r["step"]) for r in log]
    assert [round(e.value, 4) for e in events.Scalars("eval/r@1")] == [round(float(r["r@1"]), 4)
                                                                       for r in log]
    assert len(events.Scalars("train/loss_step")) == int(log[-1]["step"])
    assert "eval/retrieval_examples" in tags["images"]
    assert len(events.Images("eval/retrieval_examples")) == 2


def test_attention_and_tensorboard_error_paths(invoke, tmp_path, monkeypatch):
    """One line, exit 2, nothing written: no checkpoint, bad --queries, bad --format,
    --out that is a file, and --tensorboard without the package."""
    import builtins

    from tests._train_world import register_test_model

    ds = write_world(tmp_path / "w")
    run = tmp_path / "run"
    run.mkdir()
    (tmp_path / "file").write_text("x")
    cases = [
        ([run, "--data", ds, "--out", tmp_path / "att"], "no checkpoint"),
        ([run, "--data", ds, "--out", tmp_path / "att", "--queries", "0"], "--queries 0"),
        ([run, "--data", ds, "--out", tmp_path / "att", "--format", "gif"], "--format 'gif'"),
    ]
    for args, message in cases:
        res = invoke("viz", "attention", *args)
        assert res.exit_code == 2 and message in res.output, res.output
        assert "Traceback" not in res.output and not (tmp_path / "att").exists()
    real_import = builtins.__import__

    def no_tensorboard(name, *a, **k):
        if name.startswith("torch.utils.tensorboard"):
            raise ImportError("no tensorboard")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    name = register_test_model()
    res = invoke("train", name, "--data", ds, "--out", tmp_path / "tb", "--workers", "0",
                 "--tensorboard", "--max-steps", "1")
    assert res.exit_code == 2 and "pip install 'geobench-cvgl[tb]'" in res.output
    assert len([ln for ln in res.stderr.splitlines() if ln.startswith("error:")]) == 1
    assert "Traceback" not in res.output and not (tmp_path / "tb" / "checkpoint.pt").exists()
