"""Training-step time, JAX backend vs torch backend: the same model (one preset), the same weights (converted exactly,
reclip_eval/flax_models/convert.py), the same batch and the same AdamW settings, in one run on one device.

Not a test. Each backend runs --warmup steps (jax compiles in the first; its compile time is reported apart), then
--steps timed steps, each waited for (torch: the step returns on CPU / after torch.cuda.synchronize; jax:
block_until_ready). Reported per image size: median and spread of the step time, samples/s, the ratio
jax / torch of samples/s, and both backends' first-step loss (they must agree: the same function of the same
weights; a wrong setup shows up there before it shows up as a speed).

    python benchmarks/jax_step.py --preset mini --sizes 64,32 --batch-size 64 --steps 20 \\
        --out benchmarks/results/jax_step_cpu.json
    python benchmarks/jax_step.py --preset vit-l16-text12x1024 --sizes 224,64 --batch-size 128 --device cuda \\
        --out benchmarks/results/jax_step_gpu.json     # needs jax[cuda13]

A CPU smoke run: --preset tiny --sizes 32 --batch-size 8 --steps 2 --warmup 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from _common import emit_report

LR, BETAS, EPS, WEIGHT_DECAY = 5e-4, (0.9, 0.98), 1e-6, 0.2


def _batch(batch: int, size: int, text_length: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    pixels = rng.normal(size=(batch, 3, size, size)).astype(np.float32)
    tokens = rng.integers(1, 49000, size=(batch, text_length)).astype(np.int64)
    tokens[:, 0], tokens[:, -1] = 49406, 49407
    return pixels, tokens


def _time(step, warmup: int, steps: int) -> tuple[list[float], float, float]:
    """(timed step seconds, first-step loss, seconds of the warmup steps)."""
    start = time.perf_counter()
    first = step()
    for _ in range(warmup - 1):
        step()
    warm = time.perf_counter() - start
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return times, first, warm


def _torch_step(config, state, pixels, tokens, device: str):
    from reclip_eval.models import CLIP
    from reclip_eval.train.loss import contrastive_loss

    model = CLIP(config).to(device)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, betas=BETAS, eps=EPS, weight_decay=WEIGHT_DECAY)
    x, t = torch.from_numpy(pixels).to(device), torch.from_numpy(tokens).to(device)

    def step() -> float:
        loss = contrastive_loss(*model(x, t))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return loss.item()

    return step


def _jax_step(config, state, pixels, tokens, device: str):
    import jax
    import optax

    from reclip_eval.flax_models.clip import CLIP as FlaxCLIP
    from reclip_eval.flax_models.compile_cache import enable_compilation_cache
    from reclip_eval.flax_models.convert import torch_to_flax
    from reclip_eval.jax_train.step import data_mesh, init_state, make_train_step, param_shardings

    enable_compilation_cache()
    platform = {"cuda": "gpu"}.get(device.partition(":")[0], device.partition(":")[0])
    mesh = data_mesh(jax.devices(platform)[:1])
    params = torch_to_flax(state, config)
    # torch's AdamW decays every parameter by lr * wd; optax.adamw the same with its default mask (all).
    tx = optax.adamw(LR, b1=BETAS[0], b2=BETAS[1], eps=EPS, weight_decay=WEIGHT_DECAY)
    train_state = init_state(params, tx, mesh, param_shardings(params, mesh))
    run = make_train_step(FlaxCLIP(config), tx, mesh)
    nhwc, ids = pixels.transpose(0, 2, 3, 1), tokens.astype(np.int32)
    holder = {"state": train_state}

    def step() -> float:
        holder["state"], metrics = run(holder["state"], nhwc, ids)
        return float(jax.block_until_ready(metrics["loss"]))

    return step


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="mini")
    parser.add_argument("--sizes", default="64,32", help="image sizes, comma-separated")
    parser.add_argument("--text-length", type=int, default=None, help="default: the preset's context length")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.warmup < 1 or args.steps < 1:
        parser.error("--warmup and --steps must be at least 1")

    import jax
    import jaxlib

    from reclip_eval.models import CLIP, build_config
    from reclip_eval.models.presets import with_image_size

    torch.manual_seed(0)
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        config = with_image_size(build_config(args.preset), size)
        text_length = args.text_length or config.text.context_length
        state = {k: v.detach().numpy() for k, v in CLIP(config).state_dict().items()}
        pixels, tokens = _batch(args.batch_size, size, text_length)
        measured = {}
        for backend, make in (("torch", _torch_step), ("jax", _jax_step)):
            times, first_loss, warm = _time(make(config, state, pixels, tokens, args.device), args.warmup,
                                            args.steps)
            median = statistics.median(times)
            measured[backend] = {"median_step_s": round(median, 5), "min_step_s": round(min(times), 5),
                                 "max_step_s": round(max(times), 5), "samples_per_s": round(args.batch_size / median,
                                                                                             1),
                                 "first_step_loss": first_loss, "warmup_s": round(warm, 3)}
        rows.append({"image_size": size, "text_length": text_length, **measured,
                     "jax_over_torch_samples_per_s": round(measured["jax"]["samples_per_s"]
                                                           / measured["torch"]["samples_per_s"], 3),
                     "first_loss_abs_diff": abs(measured["jax"]["first_step_loss"]
                                                - measured["torch"]["first_step_loss"])})
    report = {
        "command": "python benchmarks/jax_step.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "device": args.device, "preset": args.preset, "batch_size": args.batch_size, "steps": args.steps,
        "warmup": args.warmup, "optimizer": {"adamw_lr": LR, "betas": BETAS, "eps": EPS, "weight_decay": WEIGHT_DECAY},
        "versions": {"torch": torch.__version__, "jax": jax.__version__, "jaxlib": jaxlib.__version__},
        "torch_threads": torch.get_num_threads(), "rows": rows,
    }
    return emit_report(report, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
