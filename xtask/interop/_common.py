"""Helpers shared by the interop check scripts (not a check itself).

Every check script is run as `<script> --incept <binary> --fixtures <dir>` from the
repository root; these helpers parse that, find the fixture model directories, run
incept, load safetensors files and compute the error figures the checks report.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# The model directories, in the order checks visit them. `full` is git-ignored
# (`cargo xtask fixtures --full`); xtask generates it before running the checks.
TINY = ["tiny_aux", "tiny_noaux", "tiny_transform"]
ALL = TINY + ["full"]
ONNX_FILES = ["ts_folded", "ts_bn", "dynamo"]


class InceptUnusable(Exception):
    """incept is missing or does not run at all: exit status 2."""


def parse_args(doc: str) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--incept", type=Path, required=True, help="path to the incept binary")
    ap.add_argument("--fixtures", type=Path, default=Path("fixtures"), help="fixtures directory")
    return ap.parse_args()


def check_incept(incept: Path) -> str | None:
    """None if `incept --version` runs, else the reason (print it and exit 2)."""
    if not incept.is_file():
        return f"incept binary not built: {incept} does not exist (cargo build --release -p incept-cli)"
    try:
        proc = subprocess.run([str(incept), "--version"], capture_output=True, text=True, timeout=60)
    except OSError as e:
        return f"incept binary not built: {incept} cannot be run: {e}"
    if proc.returncode != 0:
        return f"incept binary not built: `{incept} --version` exited with {proc.returncode}: {proc.stderr.strip()[:500]}"
    return None


def model_dirs(fixtures: Path, names: list[str] = ALL) -> list[Path]:
    """The fixture model directories that exist (`full` may be absent when run by hand)."""
    out = []
    for n in names:
        d = fixtures / n
        if (d / "meta.json").exists():
            out.append(d)
        else:
            print(f"note: {d} is missing, skipped")
    return out


def input_file(model_dir: Path) -> Path:
    """`input.safetensors` in the model directory if present (`full/`), else in its parent."""
    own = model_dir / "input.safetensors"
    return own if own.exists() else model_dir.parent / "input.safetensors"


def meta(model_dir: Path) -> dict:
    return json.loads((model_dir / "meta.json").read_text())


def load(path: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(path))


def max_rel(a: np.ndarray, ref: np.ndarray) -> float:
    """max |a - ref| / max |ref|, in float64."""
    a64 = np.asarray(a, dtype=np.float64)
    r64 = np.asarray(ref, dtype=np.float64)
    if a64.shape != r64.shape:
        raise ValueError(f"shape {list(a64.shape)} != reference {list(r64.shape)}")
    return float(np.max(np.abs(a64 - r64)) / max(float(np.max(np.abs(r64))), 1e-300))


def run(incept: Path, args: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    """Runs incept; raises RuntimeError (with its stderr) unless it exits 0."""
    cmd = [str(incept), *[str(a) for a in args]]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"`{' '.join(cmd)}` timed out after {timeout:.0f}s")
    if proc.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` exited with {proc.returncode}: {proc.stderr.strip()[:1500]}")
    return proc


def fixture_builder(fixtures: Path):
    """The generator module (`fixtures/make_fixtures.py`), for its model builders."""
    sys.path.insert(0, str(fixtures.resolve()))
    try:
        import make_fixtures  # noqa: PLC0415
    finally:
        sys.path.pop(0)
    return make_fixtures


def torch_model(fixtures: Path, model_dir: Path):
    """An untrained torch model with the architecture of the fixture (from its meta.json)."""
    import torchvision

    cfg = meta(model_dir)["config"]
    if cfg["full_size"]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torchvision.models.inception_v3(
                weights=None,
                aux_logits=cfg["aux_logits"],
                init_weights=False,
                num_classes=cfg["num_classes"],
                transform_input=cfg["transform_input"],
            )
    mf = fixture_builder(fixtures)
    if cfg["width_divisor"] != mf.WIDTH_DIVISOR:
        raise RuntimeError(f"{model_dir}: width_divisor {cfg['width_divisor']} != the generator's {mf.WIDTH_DIVISOR}")
    return mf.tiny_inception(cfg["num_classes"], cfg["aux_logits"], cfg["transform_input"])


@dataclass
class Tally:
    """Cases passed/failed, with the failures' messages, for the final summary line."""

    passed: int = 0
    failures: list[str] = field(default_factory=list)

    def case(self, label: str, ok: bool, detail: str, errors: list[str] | None = None) -> None:
        print(f"{'PASS' if ok else 'FAIL'}  {label}: {detail}")
        for e in errors or []:
            print(f"        - {e}")
        if ok:
            self.passed += 1
        else:
            self.failures.append(label)

    def error(self, label: str, e: Exception) -> None:
        self.case(label, False, str(e))

    def summary(self, check: str, what: str) -> int:
        total = self.passed + len(self.failures)
        tail = "" if not self.failures else f"; failed: {', '.join(self.failures)}"
        print(f"\n{check} check: {self.passed} of {total} {what}{tail}")
        return 1 if self.failures else 0


def fmt(x: float) -> str:
    return f"{x:.2e}"
