"""Writes imagenet_classes.txt: the 1000 ImageNet class names in torchvision's
order (torchvision.models._meta._IMAGENET_CATEGORIES), one per line.

Run with the repo's venv: .venv/bin/python crates/incept-cli/data/make_imagenet_classes.py
"""
import pathlib

from torchvision.models._meta import _IMAGENET_CATEGORIES

out = pathlib.Path(__file__).with_name("imagenet_classes.txt")
assert len(_IMAGENET_CATEGORIES) == 1000
out.write_text("".join(name + "\n" for name in _IMAGENET_CATEGORIES))
print(f"wrote {out} ({len(_IMAGENET_CATEGORIES)} classes)")
