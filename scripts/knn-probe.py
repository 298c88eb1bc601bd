#!/usr/bin/env python3
"""Nearest-neighbour probes of a pre-trained encoder's features of CT slices (numpy, Pillow).

Usage: knn-probe.py views SLICES_DIR OUT_DIR SEED
           one augmented view of every slice of `lim preprocess` output
           (`<volume>/<slice>.png`), as the tiny preset's large crops are made: a
           RandomResizedCrop of 90 to 100 % of the slice to 64 px, brightness and contrast
           jitter of 0.4 with probability 0.8, a Gaussian blur (radius 0.1 to 2) with
           probability 0.5. Make two sets with different seeds.
       knn-probe.py crops SLICES_DIR OUT_DIR SEED
           a CT-domain task for `lim evaluate`: OUT_DIR/labels.csv (`path,label,split`) and
           4 crops of every slice made as the tiny preset's small crops are (10 to 33 % of
           the slice, 32 px, jitter and blur), labelled with their scan. Splits are blocks of
           5 consecutive slices (train, val, train, test, ...), so no slice has crops in two
           splits. A crop of a tenth of a slice shows tissue, not the body's outline, so
           telling the scans apart needs features of local structure: what SwAV's
           small-crop-to-large-crop prediction trains.
       knn-probe.py A.npy B.npy
           `lim embed` features of the two view sets (rows listed in A.npy.txt, B.npy.txt),
           L2-normalised and compared by cosine similarity:
  retrieval  the share of views in A whose nearest view in B is of the same slice, or of one
             within two slices of it in the same volume (neighbouring slices are near copies);
             what SwAV's invariance to crops and jitter should raise;
  level      each view of one chest CT takes the relative position (0 at the first slice, 1
             at the last) of its nearest view of the other chest CT; the mean absolute error,
             both ways (chance is about 1/3).
"""
import sys
from pathlib import Path

import numpy as np

CHESTS = ("lung1_image", "lung2_image")
# `crops`: per slice, and splits by blocks of consecutive slices.
CROPS_PER_SLICE = 4
BLOCK = 5
SPLITS = ("train", "val", "train", "test")
# The DICOM series is lung1_image sliced again: left out rather than counted twice.
SKIP = {"PYRADIOMICS-LUNG1_1"}


def load(path):
    x = np.load(path).astype(np.float64)
    x /= np.linalg.norm(x, axis=1, keepdims=True) + 1e-12
    rows = [Path(p) for p in Path(str(path) + ".txt").read_text().split("\n") if p]
    return x, [r.parent.name for r in rows], [int(r.stem) for r in rows]


def retrieval(a, b):
    (x, volumes, slices), (y, b_volumes, b_slices) = a, b
    nearest = (x @ y.T).argmax(1)
    return np.mean([volumes[i] == b_volumes[j] and abs(slices[i] - b_slices[j]) <= 2
                    for i, j in enumerate(nearest)])


def level(a):
    x, volumes, slices = a

    def chest(v):
        idx = sorted((i for i, w in enumerate(volumes) if w == v), key=lambda i: slices[i])
        return x[idx], np.linspace(0.0, 1.0, len(idx))

    (p, pp), (q, pq) = chest(CHESTS[0]), chest(CHESTS[1])
    return (np.abs(pq[(p @ q.T).argmax(1)] - pp).mean() + np.abs(pp[(q @ p.T).argmax(1)] - pq).mean()) / 2


def augmented(rng, image, size, scale):
    """A view of `image` as the tiny preset's crops are made: a RandomResizedCrop of `scale`
    of the slice to `size` px, brightness and contrast jitter of 0.4 with probability 0.8, a
    Gaussian blur of radius 0.1 to 2 with probability 0.5."""
    from PIL import Image, ImageEnhance, ImageFilter
    w, h = image.size
    area = rng.uniform(*scale) * w * h
    ratio = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
    cw, ch = min(w, round(np.sqrt(area * ratio))), min(h, round(np.sqrt(area / ratio)))
    left, top = rng.integers(0, w - cw + 1), rng.integers(0, h - ch + 1)
    view = image.crop((left, top, left + cw, top + ch)).resize((size, size), Image.BILINEAR)
    if rng.random() < 0.8:
        view = ImageEnhance.Brightness(view).enhance(rng.uniform(0.6, 1.4))
        view = ImageEnhance.Contrast(view).enhance(rng.uniform(0.6, 1.4))
    if rng.random() < 0.5:
        view = view.filter(ImageFilter.GaussianBlur(rng.uniform(0.1, 2.0)))
    return view


def make_views(slices, out, seed):
    from PIL import Image
    rng = np.random.default_rng(seed)
    for path in sorted(Path(slices).glob("*/*.png")):
        view = augmented(rng, Image.open(path).convert("L"), 64, (0.9, 1.0))
        target = Path(out) / path.parent.name / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        view.save(target)


def make_crops(slices, out, seed):
    from PIL import Image
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
            augmented(rng, image, 32, (0.10, 0.33)).save(out / name)
            rows.append(f"{name},{volume},{split}")
    (out / "labels.csv").write_text("\n".join(rows) + "\n")
    print(f"{len(rows) - 1} crops in {out}")


if __name__ != "__main__":
    pass
elif sys.argv[1] == "views":
    make_views(sys.argv[2], sys.argv[3], int(sys.argv[4]))
elif sys.argv[1] == "crops":
    make_crops(sys.argv[2], sys.argv[3], int(sys.argv[4]))
else:
    a, b = load(sys.argv[1]), load(sys.argv[2])
    print(f"{sys.argv[1]}: retrieval {retrieval(a, b):.3f}, level error {level(a):.3f} "
          f"({len(a[0])} views, {a[0].shape[1]} features)")
