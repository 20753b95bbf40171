#!/usr/bin/env python3
"""Interop check `run`: `incept run` logits against PyTorch and onnxruntime.

For every fixture model directory (tiny_aux, tiny_noaux, tiny_transform, full), on the
golden input (`input` of the fixture's input.safetensors, written alone to a temporary
.safetensors file):

  * `incept run model.pth --input x.safetensors --save out.safetensors` (plus
    `--transform-input` when meta.json says so: a state dict does not record it), in
    float32 and with `--precision f64`; `logits` is compared with `golden.safetensors`
    `logits_f64` (PyTorch float64):
      - float32: max|a-b| / max|b| must not exceed PyTorch's own float32 error on the same
        input, i.e. max_rel(golden logits_f32, logits_f64) of that fixture;
      - float64: max_rel <= 1e-9;
  * `incept run <f>.onnx ...` for the committed ONNX exports (ts_folded, ts_bn, dynamo)
    in float32, compared with onnxruntime's logits of the same file (`ort.safetensors`
    `<f>/logits`). Two correct float32 engines differ by up to the sum of their errors, so
    the bound is PyTorch float32's error (above) plus onnxruntime's own error on that file
    (max_rel(ort `<f>/logits`, logits_f64)): if incept is as accurate as PyTorch float32,
    the triangle inequality keeps it within. PyTorch's float32 error alone is not a usable
    bound here: PyTorch float32 and onnxruntime already differ by more than it on every
    fixture (e.g. full ts_folded: 3.8e-5 against a bound of 3.2e-5). The error against
    PyTorch float64 is reported beside it.

Usage: check_run.py --incept target/release/incept --fixtures fixtures
Exit status: 0 all match, 1 mismatches, 2 incept missing or unusable.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

import _common as c

F64_TOLERANCE = 1e-9


def incept_logits(incept: Path, argv: list, out: Path) -> np.ndarray:
    c.run(incept, ["run", *argv, "--save", out])
    saved = c.load(out)
    if "logits" not in saved:
        raise RuntimeError(f"{out.name} has no `logits` key (keys: {sorted(saved)[:8]})")
    out.unlink()
    return saved["logits"]


def main() -> int:
    args = c.parse_args(__doc__)
    why = c.check_incept(args.incept)
    if why:
        print(why)
        return 2
    tally = c.Tally()
    with tempfile.TemporaryDirectory(prefix="incept-run-") as tmp:
        tmp = Path(tmp)
        for d in c.model_dirs(args.fixtures):
            cfg = c.meta(d)["config"]
            x_path = tmp / f"{d.name}_input.safetensors"
            save_file({"input": c.load(c.input_file(d))["input"]}, str(x_path))
            golden = c.load(d / "golden.safetensors")
            ort_ref = c.load(d / "ort.safetensors")
            f64 = golden["logits_f64"]
            bound = c.max_rel(golden["logits_f32"], f64)  # PyTorch float32's own error
            flags = ["--transform-input"] if cfg["transform_input"] else []
            out = tmp / "out.safetensors"

            for precision in ("f32", "f64"):
                label = f"{d.name} model.pth {precision}"
                try:
                    y = incept_logits(
                        args.incept, [d / "model.pth", *flags, "--input", x_path, "--precision", precision], out
                    )
                    err = c.max_rel(y, f64)
                except (RuntimeError, ValueError) as e:
                    tally.error(label, e)
                    continue
                tol = bound if precision == "f32" else F64_TOLERANCE
                what = "torch f32 vs f64" if precision == "f32" else "fixed"
                ok = err <= tol
                tally.case(label, ok, f"vs torch f64 {c.fmt(err)} (bound {c.fmt(tol)}, {what})",
                           [] if ok else [f"{c.fmt(err)} > {c.fmt(tol)}"])

            for src in c.ONNX_FILES:
                label = f"{d.name} {src}.onnx f32"
                try:
                    y = incept_logits(args.incept, [d / f"{src}.onnx", "--input", x_path], out)
                    err = c.max_rel(y, ort_ref[f"{src}/logits"])
                    err64 = c.max_rel(y, f64)
                except (RuntimeError, ValueError) as e:
                    tally.error(label, e)
                    continue
                ort_err = c.max_rel(ort_ref[f"{src}/logits"], f64)
                tol = bound + ort_err
                ok = err <= tol
                tally.case(
                    label,
                    ok,
                    f"vs onnxruntime {c.fmt(err)} (bound {c.fmt(tol)} = torch f32 {c.fmt(bound)} + ort {c.fmt(ort_err)}),"
                    f" vs torch f64 {c.fmt(err64)}",
                    [] if ok else [f"{c.fmt(err)} > {c.fmt(tol)}"],
                )
    return tally.summary("run", "runs match PyTorch / onnxruntime")


if __name__ == "__main__":
    sys.exit(main())
