#!/usr/bin/env python3
"""Interop check `report`: `incept report --format json` against torchvision's Inception3.

For each configuration (input size, batch, number of classes, aux head, transform_input)
this builds torchvision's own `Inception3` (on the meta device: shapes only, no
arithmetic), records every module's output shape with forward hooks, and compares
with the layers incept reports:

  (a) output shape of every layer whose name torch also has (functional ops that torch
      has no module for are skipped), and every torch module incept should have
      reported (leaf modules, the BasicConv2d containers = their ReLU, the Mixed
      blocks = their Concat) must be there;
  (b) per-layer parameter count = numel of the module's direct parameters;
  (c) totals.main.params / totals.aux.params / totals.all.params = sums over modules;
  (d) per-layer MACs: Conv2d = output elements * (in_channels / groups) * kh * kw,
      Linear = batch * in_features * out_features, every other module 0; and the
      totals' MACs as sums of those.

The aux head does not run in eval mode, so it is hooked by calling model.AuxLogits on
the Mixed_6e output. Layer sections must be "aux" for AuxLogits.* and "main" otherwise.

Usage: check_report.py --incept target/release/incept [--fixtures fixtures] [--max-report N]
Exit status: 0 all match, 1 mismatches, 2 incept missing or unusable.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torchvision.models import inception as tvi


@dataclass(frozen=True)
class Case:
    size: int
    num_classes: int
    aux: bool
    batch: int = 1
    transform_input: bool = False

    def label(self) -> str:
        return (
            f"{self.size}x{self.size} batch={self.batch} classes={self.num_classes} "
            f"{'aux' if self.aux else 'no-aux'}{' transform-input' if self.transform_input else ''}"
        )

    def args(self) -> list[str]:
        a = [
            "report", "--arch", "inception_v3",
            "--input-size", str(self.size),
            "--batch", str(self.batch),
            "--num-classes", str(self.num_classes),
        ]
        if not self.aux:
            a.append("--no-aux")
        if self.transform_input:
            a.append("--transform-input")
        return a + ["--format", "json"]


def cases() -> list[Case]:
    out = []
    for size in (299, 342, 512):
        for k in (1000, 10):
            for aux in (True, False):
                out.append(Case(size, k, aux))
    # The aux head needs Mixed_6e to be at least 5x5 after its 5x5/3 pooling: not at 75.
    out += [Case(75, 1000, False), Case(75, 10, False)]
    out += [Case(299, 1000, True, batch=3), Case(299, 10, True, transform_input=True)]
    return out


@dataclass
class TorchLayer:
    name: str
    kind: str  # torch class name
    shape: list[int]
    params: int
    macs: int
    section: str


def torch_reference(case: Case) -> dict[str, TorchLayer]:
    """Shapes, direct parameter counts and MACs of every torch module, by name."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with torch.device("meta"):
            model = tvi.Inception3(
                num_classes=case.num_classes,
                aux_logits=case.aux,
                transform_input=case.transform_input,
                init_weights=False,
            )
    model.eval()
    layers: dict[str, TorchLayer] = {}

    def hook(name: str):
        def fn(mod: nn.Module, inputs, output):
            if not isinstance(output, torch.Tensor):
                return
            if isinstance(mod, nn.Conv2d):
                kh, kw = mod.kernel_size
                macs = output.numel() * (mod.in_channels // mod.groups) * kh * kw
            elif isinstance(mod, nn.Linear):
                macs = output.numel() * mod.in_features
            else:
                macs = 0
            layers[name] = TorchLayer(
                name=name,
                kind=type(mod).__name__,
                shape=list(output.shape),
                params=sum(p.numel() for p in mod.parameters(recurse=False)),
                macs=macs,
                section="aux" if name.split(".")[0] == "AuxLogits" else "main",
            )

        return fn

    for name, mod in model.named_modules():
        if name:
            mod.register_forward_hook(hook(name))
    mixed_6e: list[torch.Tensor] = []
    model.Mixed_6e.register_forward_hook(lambda _m, _i, o: mixed_6e.append(o))
    x = torch.empty(case.batch, 3, case.size, case.size, device="meta")
    with torch.no_grad():
        model(x)
        if model.AuxLogits is not None:
            model.AuxLogits(mixed_6e[0])
    # Modules whose parameters exist but never ran would be missed by the hooks.
    for name, mod in model.named_modules():
        if name and name not in layers and any(True for _ in mod.parameters(recurse=False)):
            raise RuntimeError(f"torch module {name} has parameters but produced no output in {case.label()}")
    return layers


def expected_in_ir(layer: TorchLayer) -> bool:
    """Torch modules that incept must report under the same name.

    The AuxLogits container is not one: its output is AuxLogits.fc's.
    """
    return layer.name != "AuxLogits"


@dataclass
class CaseResult:
    case: Case
    compared: int = 0
    skipped: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def run_incept(incept: Path, case: Case) -> dict:
    proc = subprocess.run([str(incept), *case.args()], capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(
            f"`incept {' '.join(case.args())}` exited with {proc.returncode}: {proc.stderr.strip()[:2000]}"
        )
    try:
        return json.loads(proc.stdout)
    except json.JSONDecodeError as e:
        raise RuntimeError(f"`incept {' '.join(case.args())}` did not print JSON ({e}): {proc.stdout[:300]!r}")


def compare(case: Case, report: dict, ref: dict[str, TorchLayer]) -> CaseResult:
    res = CaseResult(case)
    err = res.errors.append
    if report.get("schema_version") != 1:
        err(f"schema_version is {report.get('schema_version')!r}, expected 1")
    layers = report.get("layers")
    if not isinstance(layers, list):
        err("no `layers` list in the report")
        return res

    seen: set[str] = set()
    for layer in layers:
        name = layer.get("name")
        if name in seen:
            err(f"layer {name}: reported twice")
        seen.add(name)
        t = ref.get(name)
        if t is None:
            res.skipped.append(f"{name} ({layer.get('op')})")
            continue
        res.compared += 1
        if layer.get("output_shape") != t.shape:
            err(f"layer {name} ({layer.get('op')}): output_shape {layer.get('output_shape')} != torch {t.shape}")
        if layer.get("params") != t.params:
            err(f"layer {name} ({layer.get('op')}): params {layer.get('params')} != torch {t.params} ({t.kind})")
        if layer.get("macs") != t.macs:
            note = "" if t.macs else " (the reference counts MACs for Conv2d and Linear only)"
            err(f"layer {name} ({layer.get('op')}): macs {layer.get('macs')} != torch {t.macs} ({t.kind}){note}")
        if layer.get("section") != t.section:
            err(f"layer {name}: section {layer.get('section')!r} != {t.section!r}")

    for t in ref.values():
        if expected_in_ir(t) and t.name not in seen:
            err(f"torch module {t.name} ({t.kind}, output {t.shape}) is missing from the report")

    totals = report.get("totals", {})
    sums = {
        "main": (sum(t.params for t in ref.values() if t.section == "main"), sum(t.macs for t in ref.values() if t.section == "main")),
        "aux": (sum(t.params for t in ref.values() if t.section == "aux"), sum(t.macs for t in ref.values() if t.section == "aux")),
    }
    sums["all"] = (sums["main"][0] + sums["aux"][0], sums["main"][1] + sums["aux"][1])
    for section, (params, macs) in sums.items():
        got = totals.get(section)
        if got is None:
            if section == "aux" and not case.aux:
                continue  # an absent aux total is fine without an aux head
            err(f"totals.{section} missing")
            continue
        if got.get("params") != params:
            err(f"totals.{section}.params {got.get('params')} != torch {params}")
        if got.get("macs") != macs:
            err(f"totals.{section}.macs {got.get('macs')} != torch {macs}")
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--incept", type=Path, required=True, help="path to the incept binary")
    ap.add_argument("--fixtures", type=Path, default=None, help="fixtures directory (unused by this check)")
    ap.add_argument("--max-report", type=int, default=15, help="mismatches shown per configuration")
    args = ap.parse_args()

    if not args.incept.is_file():
        print(f"incept binary not built: {args.incept} does not exist (cargo build --release -p incept-cli)")
        return 2

    results: list[CaseResult] = []
    for case in cases():
        ref = torch_reference(case)
        try:
            report = run_incept(args.incept, case)
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
            r = CaseResult(case)
            r.errors.append(str(e))
            results.append(r)
            print(f"FAIL  {case.label()}: {e}")
            continue
        r = compare(case, report, ref)
        results.append(r)
        status = "PASS" if not r.errors else "FAIL"
        main_t = next((t for t in [report.get("totals", {}).get("main")] if t), {})
        print(
            f"{status}  {case.label()}: {r.compared} layers compared, {len(r.skipped)} without a torch module; "
            f"main params {main_t.get('params')} macs {main_t.get('macs')}"
        )
        for e in r.errors[: args.max_report]:
            print(f"        - {e}")
        if len(r.errors) > args.max_report:
            print(f"        ... and {len(r.errors) - args.max_report} more")

    failed = [r for r in results if r.errors]
    skipped = sorted({s for r in results for s in r.skipped})
    if skipped:
        shown = ", ".join(skipped[:12]) + (" ..." if len(skipped) > 12 else "")
        print(f"\nlayers without a torch module (not compared): {len(skipped)} distinct, e.g. {shown}")
    print(
        f"\nreport check: {len(results) - len(failed)} of {len(results)} configurations match torchvision"
        + ("" if not failed else f"; {sum(len(r.errors) for r in failed)} mismatches")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
