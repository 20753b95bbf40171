#!/usr/bin/env python3
"""Interop check `onnx-export`: ONNX files written by `incept convert` against onnx and onnxruntime.

For every fixture model directory (tiny_aux, tiny_noaux, tiny_transform, full):

  * `incept convert model.pth -o x.onnx` (with `--transform-input` when the fixture's
    meta.json says so), at opsets 13, 17 and 21 for tiny_aux and 17 for the others;
  * `incept convert <f>.onnx -o x.onnx` for each committed ONNX export (ts_folded,
    ts_bn, dynamo): ONNX back to ONNX.

Each output must
  (a) pass `onnx.checker.check_model(path, full_check=True)` and declare the opset asked for;
  (b) run in onnxruntime (CPUExecutionProvider) on the golden input (`input` of the
      fixture's input.safetensors) and agree with onnxruntime's run of the corresponding
      torch export (`ort.safetensors`: `ts_bn/logits` for exports of model.pth, `<f>/logits`
      for re-exports of `<f>.onnx`): max|a-b| / max|b| <= 1e-5. The error against PyTorch's
      float64 logits (`golden.safetensors` `logits_f64`) is reported beside it;
  (c) carry producer_name `incept` and a `transform_input` metadata entry equal to the
      fixture's configuration;
  (d) use torchvision's names: an initializer `Conv2d_1a_3x3.conv.weight`, a node named
      after every torchvision module on the inference path (eval mode: no AuxLogits; for
      BatchNorm-folded sources no `.bn` nodes; for ONNX sources no `dropout`, which torch's
      exporters leave out), and, for exports of model.pth, every
      initializer named after a state-dict key holds exactly that tensor.

Usage: check_onnx_export.py --incept target/release/incept --fixtures fixtures
Exit status: 0 all match, 1 mismatches, 2 incept missing or unusable.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnx.numpy_helper
import onnxruntime as ort
import torch

import _common as c

TOLERANCE = 1e-5  # max relative error vs onnxruntime on torch's own export
OPSETS_TINY_AUX = [13, 17, 21]
SOURCES_ONNX = c.ONNX_FILES  # re-exported ONNX -> ONNX


def run_ort(path: Path, x: np.ndarray) -> np.ndarray:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()
    out = sess.get_outputs()
    if len(inp) != 1 or len(out) != 1:
        raise RuntimeError(f"expected one input and one output, got {[i.name for i in inp]} -> {[o.name for o in out]}")
    (y,) = sess.run([out[0].name], {inp[0].name: x})
    return y


def torch_module_names(fixtures: Path, model_dir: Path, folded: bool) -> set[str]:
    """Names of the torchvision modules that an eval-mode forward runs."""
    model = c.torch_model(fixtures, model_dir)
    names = set()
    for name, _m in model.named_modules():
        if not name or name.split(".")[0] == "AuxLogits":
            continue
        if folded and name.endswith(".bn"):
            continue
        names.add(name)
    return names


def check_one(
    label: str,
    out: Path,
    opset: int,
    x: np.ndarray,
    ref_ort: np.ndarray,
    ref_f64: np.ndarray,
    transform_input: bool,
    modules: set[str],
    state_dict: dict[str, torch.Tensor] | None,
    tally: c.Tally,
) -> None:
    errors: list[str] = []
    try:
        onnx.checker.check_model(str(out), full_check=True)
    except Exception as e:  # noqa: BLE001 - any checker complaint is a failure
        errors.append(f"onnx.checker (full_check): {type(e).__name__}: {str(e)[:400]}")
    model = onnx.load(str(out))
    opsets = {o.domain: o.version for o in model.opset_import}
    if opsets.get("", opsets.get("ai.onnx")) != opset:
        errors.append(f"opset_import {opsets}, asked for {opset}")
    if model.producer_name != "incept":
        errors.append(f"producer_name {model.producer_name!r}, expected 'incept'")
    props = {p.key: p.value for p in model.metadata_props}
    want_ti = "true" if transform_input else "false"
    if props.get("transform_input") != want_ti:
        errors.append(f"metadata_props transform_input = {props.get('transform_input')!r}, expected {want_ti!r}")

    inits = {t.name: t for t in model.graph.initializer}
    nodes = {n.name for n in model.graph.node}
    if "Conv2d_1a_3x3.conv.weight" not in inits:
        errors.append(f"no initializer named Conv2d_1a_3x3.conv.weight (first ones: {list(inits)[:4]})")
    missing = sorted(modules - nodes)
    if missing:
        errors.append(f"{len(missing)} torchvision modules have no node of that name, e.g. {missing[:6]}")
    named_sd = 0
    if state_dict is not None:
        for name, t in inits.items():
            if name not in state_dict:
                continue
            named_sd += 1
            got = onnx.numpy_helper.to_array(t)
            want = state_dict[name].numpy()
            if got.shape != want.shape or got.dtype != want.dtype or not np.array_equal(got, want):
                errors.append(
                    f"initializer {name}: {got.dtype}{list(got.shape)} differs from the state dict's {want.dtype}{list(want.shape)}"
                )
        if named_sd == 0:
            errors.append("no initializer is named after a state-dict key")

    try:
        y = run_ort(out, x)
        e_ort = c.max_rel(y, ref_ort)
        e_f64 = c.max_rel(y, ref_f64)
        if not e_ort <= TOLERANCE:
            errors.append(f"onnxruntime logits differ from torch's export: {c.fmt(e_ort)} > {TOLERANCE:g}")
        figures = f"vs ort(torch export) {c.fmt(e_ort)}, vs torch f64 {c.fmt(e_f64)}"
    except Exception as e:  # noqa: BLE001 - onnxruntime refusing the file is a failure
        errors.append(f"onnxruntime: {type(e).__name__}: {str(e)[:400]}")
        figures = "not run"
    extra = f", {named_sd} state-dict initializers bit-identical" if state_dict is not None else ""
    tally.case(
        label,
        not errors,
        f"{figures}; {len(model.graph.node)} nodes, {len(inits)} initializers{extra}",
        errors,
    )


def main() -> int:
    args = c.parse_args(__doc__)
    why = c.check_incept(args.incept)
    if why:
        print(why)
        return 2
    torch.set_num_threads(2)
    tally = c.Tally()
    with tempfile.TemporaryDirectory(prefix="incept-onnx-export-") as tmp:
        tmp = Path(tmp)
        for d in c.model_dirs(args.fixtures):
            cfg = c.meta(d)["config"]
            ti = bool(cfg["transform_input"])
            x = c.load(c.input_file(d))["input"]
            golden = c.load(d / "golden.safetensors")
            ort_ref = c.load(d / "ort.safetensors")
            sd = torch.load(d / "model.pth", weights_only=True, map_location="cpu")
            mods_bn = torch_module_names(args.fixtures, d, folded=False)
            mods_folded = {m for m in mods_bn if not m.endswith(".bn")}
            jobs: list[tuple[str, list[str], int, np.ndarray, set[str], dict | None]] = []
            opsets = OPSETS_TINY_AUX if d.name == "tiny_aux" else [17]
            for opset in opsets:
                flags = ["--transform-input"] if ti else []
                jobs.append(
                    (f"model.pth opset {opset}", [d / "model.pth", *flags, "--opset", str(opset)], opset,
                     ort_ref["ts_bn/logits"], mods_bn, sd)
                )
            for src in SOURCES_ONNX:
                # torch's exporters drop the eval-mode Dropout: the source has nothing to name `dropout`.
                mods = (mods_bn if src == "ts_bn" else mods_folded) - {"dropout"}
                jobs.append((f"{src}.onnx opset 17", [d / f"{src}.onnx", "--opset", "17"], 17, ort_ref[f"{src}/logits"], mods, None))
            for i, (what, argv, opset, ref, mods, state) in enumerate(jobs):
                label = f"{d.name} {what}"
                out = tmp / f"{d.name}_{i}.onnx"
                try:
                    c.run(args.incept, ["convert", *argv, "-o", out])
                except RuntimeError as e:
                    tally.error(label, e)
                    continue
                check_one(label, out, opset, x, ref, golden["logits_f64"], ti, mods, state, tally)
                out.unlink(missing_ok=True)
    return tally.summary("onnx-export", "exports pass onnx.checker and match onnxruntime on torch's export")


if __name__ == "__main__":
    sys.exit(main())
