#!/usr/bin/env python3
"""A CT-domain downstream task for `lim evaluate`: which scan a small crop comes from.

Usage: crop-probe.py SLICES_DIR OUT_DIR [SEED]

Writes OUT_DIR/labels.csv (`path,label,split`, the layout `lim evaluate` reads) and the crops
it lists: CROPS_PER_SLICE crops of every slice of `lim preprocess` output
(`<volume>/<slice>.png`), made as the tiny preset's small crops are (a RandomResizedCrop of
10 to 33 % of the slice to 32 px; brightness and contrast jitter of 0.4 with probability
0.8; a Gaussian blur of radius 0.1 to 2 with probability 0.5). The label is the scan.
Splits are blocks of BLOCK consecutive slices (train, val, train, test, ...), so no slice
has crops in two splits; neighbouring slices across a block's edge are still near copies,
for every encoder alike. A crop of a tenth of a slice shows tissue, not the whole body
outline, so telling a head from a chest, or one chest from another, needs features of
local structure: what SwAV's small-crop-to-large-crop prediction trains.
"""
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

CROPS_PER_SLICE = 4
BLOCK = 5
SPLITS = ("train", "val", "train", "test")
# The DICOM series is lung1_image sliced again: left out rather than counted twice.
SKIP = {"PYRADIOMICS-LUNG1_1"}


def crop(rng, image):
    w, h = image.size
    area = rng.uniform(0.10, 0.33) * w * h
    ratio = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
    cw, ch = min(w, round(np.sqrt(area * ratio))), min(h, round(np.sqrt(area / ratio)))
    left, top = rng.integers(0, w - cw + 1), rng.integers(0, h - ch + 1)
    view = image.crop((left, top, left + cw, top + ch)).resize((32, 32), Image.BILINEAR)
    if rng.random() < 0.8:
        view = ImageEnhance.Brightness(view).enhance(rng.uniform(0.6, 1.4))
        view = ImageEnhance.Contrast(view).enhance(rng.uniform(0.6, 1.4))
    if rng.random() < 0.5:
        view = view.filter(ImageFilter.GaussianBlur(rng.uniform(0.1, 2.0)))
    return view


def main(slices, out, seed):
    rng = np.random.default_rng(seed)
    out = Path(out)
    rows = ["path,label,split"]
    for path in sorted(Path(slices).glob("*/*.png")):
        volume = path.parent.name
        if volume in SKIP:
            continue
        split = SPLITS[(int(path.stem) // BLOCK) % len(SPLITS)]
        image = Image.open(path).convert("L")
        for k in range(CROPS_PER_SLICE):
            name = Path(volume) / f"{path.stem}-{k}.png"
            (out / volume).mkdir(parents=True, exist_ok=True)
            crop(rng, image).save(out / name)
            rows.append(f"{name},{volume},{split}")
    (out / "labels.csv").write_text("\n".join(rows) + "\n")
    print(f"{len(rows) - 1} crops in {out}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 0)
