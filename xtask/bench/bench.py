#!/usr/bin/env python3
"""incept side by side with its peers on the full-size Inception V3, in one run.

Run through `cargo xtask bench [--quick] [--write]`. Every figure is measured
here and now, peers interleaved with incept, and reported as a ratio:

- inference: `incept bench` (model.pth, BatchNorm kept and fused by incept) vs
  onnxruntime (CPUExecutionProvider, same thread count, all graph
  optimisations) on `ts_folded.onnx`, the export of the same weights that
  onnxruntime runs fastest; batch 1 and 8, 1 and 2 threads, in five rounds
  that alternate which of the two runs first. The machine's
  GEMM rate (onnxruntime's MatMul, 2048^3 float32) and its FMA peak (the
  `fma_peak` example: FMAs on registers alone, on as many threads) are
  measured in the same run.
- loading: `incept report model.pth` (read, validate, bind to the template)
  vs `torch.load(weights_only=True)`, wall time and peak resident memory of
  each process.
- the two vCPUs' distance: a cache line's round trip between two threads
  (the `core_latency` example), beside each configuration, since it moves
  two-thread figures (see the header written to docs/benchmarks.md).
- converting: `incept convert model.pth -o x.safetensors` vs the Python
  script users run today (`torch.load` + `safetensors.torch.save_file`).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


# Alternating rounds of incept and onnxruntime per configuration (odd, so
# one round's median is the median).
ROUNDS = 5


def run_child(cmd: list[str]) -> tuple[float, float, str]:
    """Like measured(), with the child's own peak RSS from wait4."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # Read the pipes before waiting, so a chatty child cannot block.
    out = proc.stdout.read()
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"command failed ({proc.returncode}): {' '.join(map(str, cmd))}\n{err.decode()}")
    return wall, usage.ru_maxrss / 1024, out.decode()


def incept_bench(incept: Path, model: Path, batch: int, threads: int, iters: int) -> dict:
    _, rss, out = run_child(
        [incept, "bench", model, "--batch", str(batch), "--threads", str(threads),
         "--iters", str(iters), "--warmup", "3", "--format", "json"]
    )
    r = json.loads(out)
    r["peak_rss_mib_wait4"] = rss
    return r


def round_trip_ns(probe: Path) -> float:
    """The median of the probe's three measurements of a cache line's round trip between two threads."""
    _, _, out = run_child([probe])
    ns = [float(l.split()[-2]) for l in out.splitlines() if l.startswith("round trip")]
    if not ns:
        sys.exit(f"{probe} printed no round trip:\n{out}")
    return statistics.median(ns)


def fma_peak(probe: Path, threads: int) -> float | None:
    """The best of the probe's three measurements of the FMA peak on `threads` threads
    (None on a machine without vector FMAs, where the probe says so)."""
    _, _, out = run_child([probe, str(threads)])
    rates = [float(l.split()[1]) for l in out.splitlines() if l.startswith("peak ")]
    if not rates and "no vector FMA" in out:
        return None
    if not rates:
        sys.exit(f"{probe} printed no peak:\n{out}")
    return max(rates)


def ort_session(onnx_path: Path, threads: int):
    """An onnxruntime session as its users would open it for speed."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])


def ort_bench(sess, batch: int, iters: int) -> dict:
    """Median and minimum of `iters` timed runs after 3 warm-up runs."""
    import numpy as np

    x = np.random.default_rng(0).standard_normal((batch, 3, 299, 299), dtype=np.float32)
    name = sess.get_inputs()[0].name
    for _ in range(3):
        sess.run(None, {name: x})
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        sess.run(None, {name: x})
        times.append((time.perf_counter() - t) * 1e3)
    times.sort()
    return {"median_ms": statistics.median(times), "min_ms": times[0]}


def side_by_side(incept: Path, model: Path, sess, batch: int, threads: int, iters: int) -> tuple[dict, dict]:
    """incept and onnxruntime in ROUNDS alternating rounds (A B, B A, A B, ...), so a
    change in the machine's speed during the run (these shared VMs speed up and
    slow down for minutes at a time) falls on both: each side's figure is the
    median of its rounds' medians (the round itself, for incept's other fields),
    and the minimum of their minimums."""
    ours, theirs = [], []
    for r in range(ROUNDS):
        if r % 2 == 0:
            theirs.append(ort_bench(sess, batch, iters))
            ours.append(incept_bench(incept, model, batch, threads, iters))
        else:
            ours.append(incept_bench(incept, model, batch, threads, iters))
            theirs.append(ort_bench(sess, batch, iters))
    mid = lambda rounds: sorted(rounds, key=lambda x: x["median_ms"])[len(rounds) // 2]
    # Each round's own ratio: how far the machine's noise moves the figure.
    ratios = [a["median_ms"] / b["median_ms"] for a, b in zip(ours, theirs)]
    i = dict(mid(ours), min_ms=min(x["min_ms"] for x in ours), round_ratios=(min(ratios), max(ratios)))
    o = dict(mid(theirs), min_ms=min(x["min_ms"] for x in theirs))
    return i, o


def gemm_rate(threads: int) -> float:
    """The machine's float32 GEMM rate: onnxruntime's MatMul (MLAS), 2048^3.

    torch.mm is not used: its MKL build takes AVX2 paths on AMD processors and
    reports about half of what the machine does.
    """
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper

    n = 2048
    g = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])], "mm",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [n, n]),
         helper.make_tensor_value_info("b", TensorProto.FLOAT, [n, n])],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])],
    )
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feed = {"a": rng.random((n, n), dtype=np.float32), "b": rng.random((n, n), dtype=np.float32)}
    for _ in range(2):
        sess.run(None, feed)
    best = float("inf")
    for _ in range(6):
        t = time.perf_counter()
        sess.run(None, feed)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--incept", type=Path, required=True)
    ap.add_argument("--fixtures", type=Path, required=True)
    ap.add_argument("--docs", type=Path, required=True)
    ap.add_argument("--latency-probe", type=Path, required=True, help="the core_latency example's binary")
    ap.add_argument("--peak-probe", type=Path, required=True, help="the fma_peak example's binary")
    ap.add_argument("--quick", action="store_true", help="batch 1 only, fewer iterations")
    ap.add_argument("--write", action="store_true", help="write the results to --docs")
    args = ap.parse_args()
    full = args.fixtures / "full"
    model, onnx_path = full / "model.pth", full / "ts_folded.onnx"
    for built in (args.incept, args.latency_probe, args.peak_probe):
        if not built.exists():
            sys.exit(f"not built: {built} (run `cargo xtask bench` without --no-build)")

    from importlib.metadata import version

    lines: list[str] = []

    def say(s: str = "") -> None:
        print(s, flush=True)
        lines.append(s)

    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
    say(f"machine: {cpu}, {os.cpu_count()} cores, Linux {platform.release()}; "
        f"onnxruntime {version('onnxruntime')}, torch {version('torch')}; "
        f"{datetime.date.today().isoformat()}")
    say()

    # Loading and converting, first: this process has not imported torch or onnxruntime
    # yet, so the children's peak memory (wait4) is their own.
    py = sys.executable
    inc_load = min((run_child([args.incept, "report", model, "--format", "json"]) for _ in range(3)), key=lambda r: r[0])
    torch_load_code = (
        "import time, torch, sys; t = time.perf_counter(); "
        "sd = torch.load(sys.argv[1], weights_only=True); print(time.perf_counter() - t)"
    )
    tl = min((run_child([py, "-c", torch_load_code, model]) for _ in range(3)), key=lambda r: r[0])
    torch_import = run_child([py, "-c", "import torch"])
    with tempfile.TemporaryDirectory() as tmp:
        out_i, out_p = Path(tmp) / "incept.safetensors", Path(tmp) / "python.safetensors"
        inc_conv = min((run_child([args.incept, "convert", model, "-o", out_i]) for _ in range(3)), key=lambda r: r[0])
        convert_code = (
            "import sys, torch; from safetensors.torch import save_file; "
            "sd = torch.load(sys.argv[1], weights_only=True); "
            "save_file({k: v.contiguous() for k, v in sd.items()}, sys.argv[2])"
        )
        py_conv = min((run_child([py, "-c", convert_code, model, out_p]) for _ in range(3)), key=lambda r: r[0])
    size_mib = model.stat().st_size / 2**20
    say(f"| {model.name} ({size_mib:.0f} MiB) | incept | Python | incept / Python |")
    say("| --- | ---: | ---: | ---: |")
    say(f"| load (incept: read + validate + bind; Python: torch.load inside the process) | {inc_load[0] * 1e3:.0f} ms | {float(tl[2]) * 1e3:.0f} ms | **{inc_load[0] / float(tl[2]):.2f}** |")
    say(f"| load, peak memory of the process | {inc_load[1]:.0f} MiB | {tl[1]:.0f} MiB (import torch alone: {torch_import[1]:.0f} MiB) | **{inc_load[1] / tl[1]:.2f}** |")
    say(f"| convert to safetensors, wall time of the process | {inc_conv[0] * 1e3:.0f} ms | {py_conv[0] * 1e3:.0f} ms | **{inc_conv[0] / py_conv[0]:.2f}** |")
    say(f"| convert to safetensors, peak memory | {inc_conv[1]:.0f} MiB | {py_conv[1]:.0f} MiB | **{inc_conv[1] / py_conv[1]:.2f}** |")

    say()

    # Inference.
    configs = [(1, 1), (1, 2)] if args.quick else [(1, 1), (1, 2), (8, 1), (8, 2)]
    say("| batch | threads | incept median (min) ms | onnxruntime median (min) ms | incept / onnxruntime (the rounds' own ratios) | incept GFLOP/s (effective: the definition's FLOPs) | machine FMA peak GFLOP/s (incept's effective rate over it) | machine GEMM GFLOP/s (onnxruntime MatMul 2048³) | thread round trip ns (before, after) |")
    say("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    peak_b1 = None
    for batch, threads in configs:
        iters = (10 if args.quick else 20) if batch == 1 else (3 if args.quick else 6)
        sess = ort_session(onnx_path, threads)
        rt0 = round_trip_ns(args.latency_probe)
        i, o = side_by_side(args.incept, model, sess, batch, threads, iters)
        rt1 = round_trip_ns(args.latency_probe)
        del sess
        g = gemm_rate(threads)
        peak = fma_peak(args.peak_probe, threads)
        share = "n/a" if peak is None else f"{peak:.0f} ({100 * i['gflops_at_median'] / peak:.0f}%)"
        if batch == 1 and threads == 2:
            peak_b1 = i
        say(f"| {batch} | {threads} | {i['median_ms']:.1f} ({i['min_ms']:.1f}) | {o['median_ms']:.1f} ({o['min_ms']:.1f}) | "
            f"**{i['median_ms'] / o['median_ms']:.2f}** ({i['round_ratios'][0]:.2f}-{i['round_ratios'][1]:.2f}) | "
            f"{i['gflops_at_median']:.0f} | {share} | {g:.0f} | {rt0:.0f}, {rt1:.0f} |")
    say()

    # Memory at inference, batch 1: against the weights plus the two largest activations.
    if peak_b1 is not None:
        _, _, rep = run_child([args.incept, "report", model, "--format", "json"])
        rep = json.loads(rep)
        weights_mib = model.stat().st_size / 2**20
        acts = sorted((4 * __import__("math").prod(l["output_shape"]) for l in rep["layers"]), reverse=True)
        budget = 1.5 * (weights_mib + (acts[0] + acts[1]) / 2**20)
        say(f"peak memory at batch 1 while running (incept bench, after loading): {peak_b1['peak_rss_mib']:.0f} MiB; "
            f"1.5 x (weights {weights_mib:.0f} MiB + two largest activations {(acts[0] + acts[1]) / 2**20:.0f} MiB) = {budget:.0f} MiB")
        say()

    if args.write:
        header = (
            "# Benchmarks\n\n"
            "Made by `cargo xtask bench --write` (`xtask/bench/bench.py`): incept and its peers measured side by\n"
            "side in one run on the full-size Inception V3 (`fixtures/full`, from `cargo xtask fixtures --full`).\n"
            "Ratios below 1 mean incept is faster or smaller. onnxruntime runs `ts_folded.onnx` (BatchNorm folded by\n"
            "the exporter: its fastest input); incept runs `model.pth` (BatchNorm kept, fused into each convolution's\n"
            "epilogue). Each configuration runs in five alternating rounds (onnxruntime then incept, incept then\n"
            "onnxruntime, and so on), each side's figure the median of its rounds' medians, so that\n"
            "a change in the machine's speed during the run falls on both; beside the ratio, the lowest and highest\n"
            "of the rounds' own ratios show how far the machine's noise moves it. These machines are shared: rerun\n"
            "before drawing conclusions from small differences. At times (the host apparently placing the two vCPUs\n"
            "far apart) a cache line's round trip between two threads takes 300-450 ns instead of 45-90 (the last\n"
            "column: `cargo run --release -p incept-interp --example core_latency` before and after each\n"
            "configuration), and two-thread batch-1 runs slow down; incept then runs each Inception block's\n"
            "branches as two sides, one thread each (`fork.rs`), 4-7% faster than splitting every step. Hosts\n"
            "differ too: the same configurations ran at 0.98-1.00 on a host twice as fast (2026-11-28, figures in\n"
            "git history) and at 0.99-1.11 on this one (2026-12-06), where the two vCPUs often run at speeds\n"
            "10-25% apart for minutes. incept splits a two-thread step by a share learned per step and a block's\n"
            "branches by their multiply-accumulates, so there the faster thread waits (2-3 ms per batch-1 run,\n"
            "summed over the joins, timed by a temporary probe in `balance::join`; onnxruntime's threads claim\n"
            "work as they go).\n\n"
            "The machine's FMA peak (the `fma_peak` example: FMAs on registers alone, AVX-512) is 114-117\n"
            "GFLOP/s on one thread here and 203-234 on two (the host varies); onnxruntime's MatMul, the GEMM rate, reaches 83-91 on\n"
            "one. incept's GFLOP/s count every product of the model's definition, the padding's too, so they are\n"
            "effective rates: incept runs the 3x3 stride-1 layers of 16+ channels with 17+ pixel rows (Conv2d_2a,\n"
            "2b, 4a and the 35x35 blocks' 3x3s, a third of the model's products) as Winograd F(2x2, 3x3), 16\n"
            "products per 2x2 output tile and channel pair instead of 36 (`kernels/winograd.rs`; its rounding\n"
            "stays at the direct sum's level, docs/numerics.md), and both incept's direct kernels and onnxruntime's\n"
            "NCHWc kernels skip the padding's products. The effective rate can thus pass the peak.\n\n"
            "Per layer, at batch 1 on one thread, each step's median over 20 runs on both sides (commands below),\n"
            "run one after the other twice (2026-12-07, at 0d187cc): incept's steps summed to 98.6 and 98.1 ms,\n"
            "onnxruntime's to 111.1 and 109.3. The Winograd layers make the difference: Conv2d_4a with its max\n"
            "pool 7.3-7.5 ms against 13.0 (onnxruntime's Conv and MaxPool), Conv2d_2b with its pool 5.6-5.8\n"
            "against 7.7, each 35x35 block's 3x3dbl_3 1.23 against 1.78 and 3x3dbl_2 0.96 against 1.17. Conv2d_2a\n"
            "(32 to 32 channels, where the transforms weigh most against the products they save) runs even, 3.4-3.6\n"
            "against 3.6. incept writes no concatenation (onnxruntime's take 0.82-0.88 ms, their own included)\n"
            "and runs the 8x8 blocks 0.9-1.1 ms faster (14.0-14.1 against 15.0-15.1, concatenations included);\n"
            "the 17x17 blocks run even (36.1-36.3 against 36.3-36.7, each layer within 0.1 ms). It is behind on\n"
            "Conv2d_3b (+0.25, 0.77-0.81 against 0.52; a 1x1 with 64 products per output, on the GEMM path).\n"
            "incept sums float32 products in K blocks of 128,\n"
            "each block's sums stored and added (sums over all of K in one block ran the direct layers 3% faster,\n"
            "but the full-size logits' error rose from 2.6e-5 to 3.9e-5, past PyTorch's own 3.2e-5). At batch 8,\n"
            "incept runs a batch image by image and each image costs what it costs alone (paired in-process\n"
            "runs: 0.999); onnxruntime's per-image time at batch 8 ranged from 2% below its batch-1 time to\n"
            "2% above. Two threads on their own images (incept's lanes) run 4% slower per image\n"
            "than one thread alone, onnxruntime's split operators 2% (caches and memory shared).\n\n"
            "Per layer, side by side: `cargo run --release -p incept-interp --example conv_profile --\n"
            "fixtures/full/model.pth [threads] [batch]` and `.venv/bin/python xtask/bench/ort_profile.py\n"
            "fixtures/full/ts_folded.onnx [threads] [batch]`; the GEMM alone, warm and cold:\n"
            "`cargo run --release -p incept-interp --example sgemm_probe`.\n\n"
        )
        args.docs.write_text(header + "\n".join(lines) + "\n")
        print(f"\nwrote {args.docs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
