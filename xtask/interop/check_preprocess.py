#!/usr/bin/env python3
"""Interop check `preprocess`: `incept run --image` preprocessing against torchvision.

Test images are made at run time in a temporary directory (numpy seed fixed):
  - noise_500x375.png         random-noise RGB, landscape (the short side is the height)
  - gradient_375x500.jpg      smooth colour gradient + mild noise, portrait, JPEG quality 95
  - gradient_375x500_pil.png  Pillow's decode of that JPEG, saved losslessly
  - square_342x342.png        random noise at exactly the resize size (torchvision skips the resize)
  - gray_400x300.png          random-noise grayscale (mode L), converted to RGB by both sides
  - gradient_342x456.jpg      the same kind of JPEG at a size the resize leaves alone, to
                              measure the JPEG decoders' difference (below)

Reference: torchvision's `transforms.Compose([Resize(342), CenterCrop(299), ToTensor(),
Normalize(mean, std)])` on the PIL image converted to RGB (mean/std: ImageNet's).

incept: `incept run <tiny_aux model.pth> --image <all> --save out.safetensors --save-taps`.
Compared:
  (a) the tap `x` (the model input as incept preprocessed it) with torchvision's tensors:
      max |a - b| per image must be <= 1/255 / 0.225 + 1e-6, one 8-bit step after
      normalisation (the smallest std gives the largest step). When an image fails, the
      report says whether incept's pixels match Pillow's own resize
      (`PIL.Image.resize(..., Image.BILINEAR)`) and at which crop offset.
      JPEGs: incept decodes with the `image` crate (zune-jpeg), Pillow with libjpeg-turbo;
      their IDCT and colour conversion round differently, by a few levels on some pixels.
      That difference D (in levels) is measured on gradient_342x456.jpg, which neither side
      resizes: incept's pixels are recovered exactly from its tap `x` and compared with
      Pillow's decode in the crop window. Resampling averages with weights summing to 1, so
      the bound for a resized JPEG is (D + 1) steps. The PNG of Pillow's decode of the same
      JPEG is held to the one-step bound: it isolates the resize + crop of that image;
  (b) the logits of that run with torch's (the same model, float32 and float64) on
      torchvision's tensors: max|a-b| / max|b| against float64 must not exceed PyTorch
      float32's own error on the same input. The lossless images only; the JPEGs' figure is
      reported (their inputs differ by the decoder difference).

The model is the tiny_aux fixture (torchvision's Inception3 with narrow channels, 1000 classes);
preprocessing does not depend on the model.

Usage: check_preprocess.py --incept target/release/incept --fixtures fixtures
Exit status: 0 all match, 1 mismatches, 2 incept missing or unusable.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision import transforms

import _common as c

MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]
RESIZE, CROP = 342, 299
ONE_STEP = 1 / 255 * (1 / min(STD))  # one 8-bit level after normalisation
SEED = 20261
JPEG_PROBE = "gradient_342x456.jpg"


def gradient(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    g = np.stack([xx / (w - 1) * 255, yy / (h - 1) * 255, (xx + yy) / (w + h - 2) * 255], axis=-1)
    return np.clip(g + rng.normal(0, 4, g.shape), 0, 255).astype(np.uint8)


def make_images(root: Path) -> list[Path]:
    rng = np.random.default_rng(SEED)
    paths = []

    p = root / "noise_500x375.png"
    Image.fromarray(rng.integers(0, 256, (375, 500, 3), dtype=np.uint8), "RGB").save(p)
    paths.append(p)

    p = root / "gradient_375x500.jpg"
    Image.fromarray(gradient(rng, 375, 500), "RGB").save(p, quality=95)
    paths.append(p)
    with Image.open(p) as im:
        q = root / "gradient_375x500_pil.png"
        im.convert("RGB").save(q)
    paths.append(q)

    p = root / "square_342x342.png"
    Image.fromarray(rng.integers(0, 256, (342, 342, 3), dtype=np.uint8), "RGB").save(p)
    paths.append(p)

    p = root / "gray_400x300.png"
    Image.fromarray(rng.integers(0, 256, (300, 400), dtype=np.uint8), "L").save(p)
    paths.append(p)

    p = root / JPEG_PROBE
    Image.fromarray(gradient(rng, 342, 456), "RGB").save(p, quality=95)
    paths.append(p)
    return paths


def torchvision_tensor(path: Path) -> torch.Tensor:
    tf = transforms.Compose(
        [transforms.Resize(RESIZE), transforms.CenterCrop(CROP), transforms.ToTensor(), transforms.Normalize(MEAN, STD)]
    )
    with Image.open(path) as im:
        return tf(im.convert("RGB"))


def incept_pixels(x: np.ndarray) -> np.ndarray:
    """incept's 8-bit pixels (H, W, 3) back from its normalised input (exact up to rounding)."""
    mean = np.array(MEAN, dtype=np.float64)
    std = np.array(STD, dtype=np.float64)
    return np.rint((x.astype(np.float64).transpose(1, 2, 0) * std + mean) * 255)


def decoder_difference(path: Path, x: np.ndarray) -> int:
    """Max |incept's decode - Pillow's| in levels, for an image the resize leaves alone."""
    with Image.open(path) as im:
        rgb = np.asarray(im.convert("RGB"), dtype=np.float64)
    h, w = rgb.shape[:2]
    if min(h, w) != RESIZE:
        raise ValueError(f"{path.name}: short side {min(h, w)}, expected {RESIZE}")
    top, left = int(round((h - CROP) / 2.0)), int(round((w - CROP) / 2.0))
    return int(np.max(np.abs(rgb[top : top + CROP, left : left + CROP] - incept_pixels(x))))


def diagnose(path: Path, got: np.ndarray) -> list[str]:
    """Where incept's input differs from torchvision's: resized pixels or the crop window."""
    with Image.open(path) as im:
        rgb = im.convert("RGB")
    w, h = rgb.size
    short, long = (w, h) if w <= h else (h, w)
    new_long = int(RESIZE * long / short)
    nw, nh = (RESIZE, new_long) if w <= h else (new_long, RESIZE)
    src = rgb.resize((nw, nh), Image.BILINEAR) if (nw, nh) != (w, h) else rgb
    resized = np.asarray(src, dtype=np.float64)
    pix = incept_pixels(got)
    best = None
    for top in range(nh - CROP + 1):
        for left in range(nw - CROP + 1):
            if abs(top - (nh - CROP) / 2) > 2 or abs(left - (nw - CROP) / 2) > 2:
                continue
            d = float(np.max(np.abs(resized[top : top + CROP, left : left + CROP] - pix)))
            if best is None or d < best[0]:
                best = (d, top, left)
    want_top, want_left = int(round((nh - CROP) / 2.0)), int(round((nw - CROP) / 2.0))
    notes = [f"PIL resize to {nw}x{nh}; torchvision crops at top={want_top} left={want_left}"]
    if best is not None:
        notes.append(
            f"incept's pixels best match PIL's resized image at top={best[1]} left={best[2]} "
            f"(max diff {best[0]:.0f} levels)"
        )
    return notes


def main() -> int:
    args = c.parse_args(__doc__)
    why = c.check_incept(args.incept)
    if why:
        print(why)
        return 2
    torch.set_num_threads(2)
    tally = c.Tally()
    model_dir = args.fixtures / "tiny_aux"
    what = "comparisons match torchvision"
    with tempfile.TemporaryDirectory(prefix="incept-preprocess-") as tmp:
        tmp = Path(tmp)
        images = make_images(tmp)
        ref = torch.stack([torchvision_tensor(p) for p in images])
        out = tmp / "out.safetensors"
        try:
            c.run(args.incept, ["run", model_dir / "model.pth", "--image", *images, "--save", out, "--save-taps"])
            saved = c.load(out)
        except RuntimeError as e:
            tally.error("incept run --image", e)
            return tally.summary("preprocess", what)
        if "x" not in saved or "logits" not in saved:
            tally.case("incept run --image", False, f"no `x` / `logits` in the saved file (keys: {sorted(saved)[:10]})")
            return tally.summary("preprocess", what)
        x = saved["x"]
        if list(x.shape) != list(ref.shape):
            tally.case("incept run --image", False, f"tap x has shape {list(x.shape)}, torchvision {list(ref.shape)}")
            return tally.summary("preprocess", what)

        probe = [p.name for p in images].index(JPEG_PROBE)
        d_jpeg = decoder_difference(images[probe], x[probe])
        print(
            f"JPEG decoders (image crate vs Pillow's libjpeg-turbo), measured on {JPEG_PROBE} (no resize): "
            f"max difference {d_jpeg} levels"
        )
        for i, p in enumerate(images):
            d = np.abs(x[i].astype(np.float64) - ref[i].numpy().astype(np.float64))
            worst = float(d.max())
            n_off = int((d > 1e-6).sum())
            steps = 1 + (d_jpeg if p.suffix == ".jpg" else 0)
            tol = steps * ONE_STEP + 1e-6
            ok = worst <= tol
            why = "" if p.suffix != ".jpg" else f", {steps} steps: JPEG decoder difference + 1"
            tally.case(
                f"input {p.name}",
                ok,
                f"max |incept - torchvision| {worst:.3g} = {worst / ONE_STEP:.2f} steps (bound {tol:.4g}{why}); "
                f"{n_off} of {d.size} values differ by > 1e-6",
                [] if ok else diagnose(p, x[i]),
            )

        # Logits: torch on torchvision's tensors, float32 (bound) and float64 (reference).
        model = c.torch_model(args.fixtures, model_dir)
        model.load_state_dict(torch.load(model_dir / "model.pth", weights_only=True), strict=True)
        model.eval()
        with torch.no_grad():
            f32 = model(ref).numpy()
            f64 = model.double()(ref.double()).numpy()
        lossless = [i for i, p in enumerate(images) if p.suffix != ".jpg"]
        bound = c.max_rel(f32[lossless], f64[lossless])
        err = c.max_rel(saved["logits"][lossless], f64[lossless])
        ok = err <= bound
        tally.case(
            f"logits of incept run --image ({len(lossless)} lossless images)",
            ok,
            f"vs torch f64 on torchvision's tensors {c.fmt(err)} (bound: torch f32 {c.fmt(bound)})",
            [] if ok else [f"{c.fmt(err)} > {c.fmt(bound)}"],
        )
        for i, p in enumerate(images):
            if p.suffix == ".jpg":
                print(
                    f"note  logits of {p.name}: vs torch f64 on torchvision's tensor "
                    f"{c.fmt(c.max_rel(saved['logits'][i], f64[i]))} (not checked: the decoded pixels differ)"
                )
    return tally.summary("preprocess", what)


if __name__ == "__main__":
    sys.exit(main())
