#!/usr/bin/env python3
"""Interop check `safetensors-export`: state dicts written by `incept convert -o w.safetensors`.

For every fixture model directory (tiny_aux, tiny_noaux, tiny_transform, full):

  1. `incept convert model.pth -o w.safetensors`;
  2. `safetensors.torch.load_file` must read it, and it must hold exactly the keys of
     `torch.load(model.pth, weights_only=True)`, each tensor bit-identical (same dtype,
     shape and bytes, `num_batches_tracked` included);
  3. the same torch architecture (the generator's `tiny_inception(...)` from
     fixtures/make_fixtures.py, or torchvision's `inception_v3` for the full set, with the
     configuration from the fixture's meta.json) must accept it with
     `load_state_dict(strict=True)`, and in eval mode on the golden input give the
     fixture's `golden.safetensors` `logits_f32`: max|a-b| / max|b| <= 1e-6 (reported;
     normally exactly 0).

Usage: check_safetensors_export.py --incept target/release/incept --fixtures fixtures
Exit status: 0 all match, 1 mismatches, 2 incept missing or unusable.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file

import _common as c

TOLERANCE = 1e-6


def main() -> int:
    args = c.parse_args(__doc__)
    why = c.check_incept(args.incept)
    if why:
        print(why)
        return 2
    # As the generator ran: one thread, deterministic kernels (the reduction order of a
    # multi-threaded convolution changes the last bits of the logits).
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    tally = c.Tally()
    with tempfile.TemporaryDirectory(prefix="incept-st-export-") as tmp:
        for d in c.model_dirs(args.fixtures):
            label = f"{d.name} model.pth -> safetensors"
            out = Path(tmp) / f"{d.name}.safetensors"
            try:
                c.run(args.incept, ["convert", d / "model.pth", "-o", out])
            except RuntimeError as e:
                tally.error(label, e)
                continue
            errors: list[str] = []
            try:
                got = load_file(str(out))
            except Exception as e:  # noqa: BLE001 - unreadable output is the failure
                tally.error(label, RuntimeError(f"safetensors.torch.load_file: {e}"))
                continue
            want = torch.load(d / "model.pth", weights_only=True, map_location="cpu")
            extra = sorted(set(got) - set(want))
            missing = sorted(set(want) - set(got))
            if extra:
                errors.append(f"{len(extra)} keys not in model.pth, e.g. {extra[:4]}")
            if missing:
                errors.append(f"{len(missing)} keys of model.pth missing, e.g. {missing[:4]}")
            identical = 0
            for k in sorted(set(got) & set(want)):
                a, b = got[k], want[k]
                if a.dtype != b.dtype or a.shape != b.shape:
                    errors.append(f"{k}: {a.dtype}{list(a.shape)} != model.pth {b.dtype}{list(b.shape)}")
                elif not torch.equal(a.reshape(-1).contiguous().view(torch.uint8), b.reshape(-1).contiguous().view(torch.uint8)):
                    errors.append(f"{k}: bytes differ from model.pth")
                else:
                    identical += 1

            figure = "not run"
            try:
                model = c.torch_model(args.fixtures, d)
                model.load_state_dict(got, strict=True)
                model.eval()
                x = torch.from_numpy(c.load(c.input_file(d))["input"])
                with torch.no_grad():
                    y = model(x)
                ref = c.load(d / "golden.safetensors")["logits_f32"]
                err = c.max_rel(y.numpy(), ref)
                figure = f"torch on it vs golden logits_f32 {c.fmt(err)}" + (" (bit-exact)" if err == 0 else "")
                if not err <= TOLERANCE:
                    errors.append(f"logits differ from golden logits_f32: {c.fmt(err)} > {TOLERANCE:g}")
            except Exception as e:  # noqa: BLE001 - load_state_dict refusing it is a failure
                errors.append(f"torch: {type(e).__name__}: {str(e)[:600]}")
            tally.case(label, not errors, f"{identical}/{len(want)} tensors bit-identical; {figure}", errors[:12])
            out.unlink(missing_ok=True)
    return tally.summary("safetensors-export", "state dicts load strictly in torch and reproduce the golden logits")


if __name__ == "__main__":
    sys.exit(main())
