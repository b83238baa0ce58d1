"""Record three training steps of SAFA's official TensorFlow code for geobench's golden test.

Run in an environment with tensorflow (2.x; the official TF1 graph runs under
tf.compat.v1) and numpy, with a work tree of github.com/shiyujiao/SAFA:

    python benchmarks/make_safa_train_golden.py --official SAFA/script \
        [--out tests/fixtures/safa_train_golden.npz]

The official files are imported unchanged: `spatial_net.SAFA` (VGG-16 branches and the
spatial-aware heads) and `train_cvusa.compute_loss` (the weighted soft-margin triplet,
gamma = `loss_weight` = 10, summed over the B x B matrix and divided by B(B-1)), and the
optimiser is the line of train_cvusa.train: tf.train.AdamOptimizer(lr, 0.9, 0.999) at
lr 1e-5. TF2 lacks tf.contrib and some TF1 names; a shim maps `import tensorflow` to
tf.compat.v1 and supplies the three tf.contrib.layers functions the files name.

Inputs are small (20 x 104 ground and polar: 1 x 4 maps after the five SAME pools, with
odd sizes rounding up on the way, N = 4) and dropout is off (keep_prob 1: TensorFlow's
dropout masks cannot be reproduced in torch). Every variable starts from numpy's PCG64
draws: variable k (in the order of `init_spec`) is mean + std * default_rng([SEED,
k]).standard_normal(shape), in float32, so the test regenerates them.

The graph runs twice. In float32, as the official code runs, for one step: loss and
gradient norms. And in float64 (tf.get_variable's default dtype and the placeholders
switched, nothing else) for three steps: a randomly initialised VGG maps every input to
nearly the same descriptor (cosines 0.99), so the loss gradient is a difference of
near-equal terms; in float32 the two frameworks' summation orders alone move step-1
gradient norms by up to ~1e-3 and, through Adam's sign-like steps on tiny gradients,
step-3 ones by a few per cent. In float64 a wrong formula cannot hide in that noise.
Per step the fixture holds the loss and every variable's gradient norm; after three
steps every variable's update norm and the updates at SAMPLES fixed positions.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import numpy as np

FORMAT = "geobench-safa-train-golden/2"
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "safa_train_golden.npz"
SEED = 23
BATCH = 4
SIZE = (20, 104)     # ground and polar (H, W)
HEADS = 8            # SAFA_8, the official default network_type
STEPS = 3
SAMPLES = 48         # update entries kept per variable
LR, KEEP_PROB = 1e-5, 1.0
VGG_LAYERS = [("conv1_1", 3, 64), ("conv1_2", 64, 64), ("conv2_1", 64, 128), ("conv2_2", 128, 128),
              ("conv3_1", 128, 256), ("conv3_2", 256, 256), ("conv3_3", 256, 256),
              ("conv4_1", 256, 512), ("conv4_2", 512, 512), ("conv4_3", 512, 512),
              ("conv5_1", 512, 512), ("conv5_2", 512, 512), ("conv5_3", 512, 512)]


def init_spec(n: int) -> list[tuple[str, tuple[int, ...], float, float]]:
    """(TF variable name, shape, mean, std) of every trainable variable, in draw order.

    Convolutions: He-scaled normals, so the deep maps neither vanish nor explode; biases
    small and non-zero so their gradients are tested; the heads as their official init
    (truncated normal 0.005, biases 0.1) but untruncated and with random biases.
    """
    spec = []
    for view in ("grd", "sat"):  # the official graph builds the ground branch first
        for name, cin, cout in VGG_LAYERS:
            spec.append((f"VGG_{view}/{name}/weights", (3, 3, cin, cout), 0.0, float(np.sqrt(2.0 / (9 * cin)))))
            spec.append((f"VGG_{view}/{name}/biases", (cout,), 0.01, 0.02))
        branch = f"spatial_{view}"
        spec += [(f"{branch}/weights1", (n, n // 2, HEADS), 0.0, 0.005),
                 (f"{branch}/biases1", (1, n // 2, HEADS), 0.1, 0.02),
                 (f"{branch}/weights2", (n // 2, n, HEADS), 0.0, 0.005),
                 (f"{branch}/biases2", (1, n, HEADS), 0.1, 0.02)]
    return spec


def initial_values(spec) -> list[np.ndarray]:
    return [np.float32(mean) + np.float32(std) * np.random.default_rng([SEED, k]).standard_normal(
        shape, dtype=np.float32) for k, (_, shape, mean, std) in enumerate(spec)]


def batch() -> tuple[np.ndarray, np.ndarray]:
    """(ground, polar) NHWC float32, drawn after the variables' streams."""
    rng = np.random.default_rng([SEED, 10_000])
    grd = rng.standard_normal((BATCH, *SIZE, 3), dtype=np.float32)
    sat = rng.standard_normal((BATCH, *SIZE, 3), dtype=np.float32)
    return grd, sat


def _import_official(script_dir: Path, dtype: str):
    """The official modules under tf.compat.v1, with the tf.contrib names they use."""
    import tensorflow as tf2

    tf = tf2.compat.v1
    tf.disable_v2_behavior()
    layers = types.SimpleNamespace(
        xavier_initializer=tf.glorot_uniform_initializer,
        l2_regularizer=lambda scale: (lambda w: scale * tf.nn.l2_loss(w)),
        l1_regularizer=lambda scale: (lambda w: scale * tf.reduce_sum(tf.abs(w))))
    tf.contrib = types.SimpleNamespace(layers=layers)
    get_variable = tf.get_variable
    # The official layers never name a dtype: this sets the precision of every variable.
    tf.get_variable = lambda *a, **k: get_variable(*a, **{"dtype": getattr(tf, dtype), **k})
    sys.modules["tensorflow"] = tf
    # train_cvusa imports its data reader and parses argv at import; neither is used here.
    sys.modules["input_data_cvusa"] = types.SimpleNamespace(InputData=None)
    sys.path.insert(0, str(script_dir))
    argv, sys.argv = sys.argv, [sys.argv[0]]
    try:
        import spatial_net
        import train_cvusa
    finally:
        sys.argv = argv
    train_cvusa.batch_size = BATCH  # compute_loss divides by the module's batch_size
    return tf, spatial_net, train_cvusa


def run(script_dir: Path, dtype: str, steps: int) -> dict[str, np.ndarray]:
    tf, spatial_net, train_cvusa = _import_official(script_dir, dtype)
    tf.set_random_seed(SEED)
    ftype = getattr(tf, dtype)
    grd_x = tf.placeholder(ftype, [None, *SIZE, 3], name="grd_x")
    sat_x = tf.placeholder(ftype, [None, *SIZE, 3], name="sat_x")
    keep_prob = tf.placeholder(ftype)
    learning_rate = tf.placeholder(tf.float32)
    sat_global, grd_global = spatial_net.SAFA(sat_x, grd_x, keep_prob, HEADS, True)
    loss = train_cvusa.compute_loss(sat_global, grd_global)
    global_step = tf.Variable(0, trainable=False)
    optimizer = tf.train.AdamOptimizer(learning_rate, 0.9, 0.999)  # as train_cvusa.train
    variables = tf.trainable_variables()
    grads = tf.gradients(loss, variables)
    train_step = optimizer.minimize(loss, global_step=global_step)

    names = [v.op.name for v in variables]
    n_cells = int(tf.get_default_graph().get_tensor_by_name("spatial_grd/weights1:0").shape[0])
    spec = init_spec(n_cells)
    if names != [s[0] for s in spec]:
        raise SystemExit(f"official variables differ from the spec:\n{names}")
    values = initial_values(spec)
    grd, sat = batch()
    feed = {grd_x: grd, sat_x: sat, keep_prob: KEEP_PROB, learning_rate: LR}
    losses, norms = [], []
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        for var, value in zip(variables, values):
            var.load(value.astype(dtype), sess)
        for _ in range(steps):
            # Loss and gradients at the weights the step starts from, then the update.
            loss_val, grad_vals = sess.run([loss, grads], feed_dict=feed)
            losses.append(loss_val)
            norms.append([np.linalg.norm(g.astype(np.float64)) for g in grad_vals])
            sess.run(train_step, feed_dict=feed)
        final = sess.run(variables)
    out: dict[str, np.ndarray] = {
        "names": np.array(names), "shapes": np.array([",".join(map(str, s[1])) for s in spec]),
        "means": np.array([s[2] for s in spec]), "stds": np.array([s[3] for s in spec]),
        "init_sums": np.array([v.astype(np.float64).sum() for v in values]),
        "batch_sums": np.array([grd.astype(np.float64).sum(), sat.astype(np.float64).sum()]),
        f"{dtype}_loss": np.array(losses, dtype=np.float64),
        f"{dtype}_grad_norms": np.array(norms),
    }
    if steps < STEPS:
        return out
    out.update({
        f"{dtype}_update_norms": np.array([np.linalg.norm(f.astype(np.float64) - v) for f, v in zip(final, values)])})
    rng = np.random.default_rng([SEED, 20_000])
    for k, (f, v) in enumerate(zip(final, values)):
        idx = np.sort(rng.choice(v.size, size=min(SAMPLES, v.size), replace=False))
        out[f"idx_{k}"] = idx.astype(np.int64)
        out[f"{dtype}_update_{k}"] = (f.astype(np.float64) - v).reshape(-1)[idx]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", type=Path, required=True, help="SAFA's script/ directory")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--part", choices=("float32", "float64"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.part:  # one precision per process: a TF1 graph session leaves global state behind
        steps = 1 if args.part == "float32" else STEPS
        np.savez(args.out, **run(args.official, args.part, steps))
        return
    data = {"format": np.array(FORMAT), "seed": np.array(SEED), "size": np.array(SIZE),
            "batch": np.array(BATCH), "heads": np.array(HEADS), "lr": np.array(LR)}
    with tempfile.TemporaryDirectory() as tmp:
        for part in ("float32", "float64"):
            path = Path(tmp) / f"{part}.npz"
            subprocess.run([sys.executable, __file__, "--official", str(args.official), "--part", part,
                            "--out", str(path)], check=True)
            with np.load(path) as part_data:
                data.update({k: part_data[k] for k in part_data.files})
    tmp_out = args.out.with_name(args.out.name + ".tmp.npz")
    np.savez_compressed(tmp_out, **data)
    tmp_out.replace(args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes); float32 loss {data['float32_loss'].tolist()}, "
          f"float64 loss per step {data['float64_loss'].tolist()}")


if __name__ == "__main__":
    main()
