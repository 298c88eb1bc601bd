#!/usr/bin/env python3
"""The paper's preprocessing and reduction scripts, re-created line for line and timed in one
process (without Python's start-up), to measure `lim bench preprocess` and `lim bench
pipeline` against on the same inputs (`lim bench` runs this file; the README's tables).

    paper-scripts.py petct DATA OUT        # PET-CT_3DNifti_to_2Dpng.py's loop
    paper-scripts.py lidc DATA OUT         # LIDC_3DDICOM_to_2Dpng.py's loop
    paper-scripts.py hash-petct PNGS OUT   # Hash_PET-CT_Volume.py's loop (Hash-6)
    paper-scripts.py hash-lidc PNGS OUT    # Hash_LIDC_Volume.py's loop (Hash-6)

DATA is laid out as `lim bench preprocess --layouts DIR` builds it (DIR/petct, DIR/lidc);
PNGS is the flat folder the matching preprocessing script wrote. Each run prints one JSON
line: {"script", "slices", "seconds", "tool"} (and "kept" for the hash scripts). Needs numpy,
nibabel, pydicom, opencv-python-headless, Pillow and imagehash.
"""
import glob
import json
import os
import shutil
import sys
import time

import cv2
import imagehash
import nibabel as nib
import numpy as np
import pydicom
from PIL import Image


def petct(data_path, out):
    """PET-CT_3DNifti_to_2Dpng.py: every <patient>/<study>/CT.nii.gz, a study counter n."""
    slices, n = 0, 0
    for patient in sorted(glob.glob(os.path.join(data_path, "*"))):
        for study in sorted(glob.glob(os.path.join(patient, "*"))):
            n += 1
            f = os.path.join(study, "CT.nii.gz")
            if not os.path.exists(f):
                continue
            vol = nib.load(f).get_fdata().transpose(2, 1, 0)
            for i in range(vol.shape[0]):
                img = vol[i]
                img = (img - img.min()) / (img.max() - img.min() + 1e-5) * 255
                cv2.imwrite(os.path.join(out, f"{os.path.basename(patient)}_{n}_{i}.png"), img)
                slices += 1
    return slices


def get_pixels_hu(ds):
    img = ds.pixel_array.astype(np.int16)
    img[img == -2000] = 0
    intercept = ds.RescaleIntercept if "RescaleIntercept" in ds else -1024
    slope = ds.RescaleSlope if "RescaleSlope" in ds else 1
    if slope != 1:
        img = slope * img.astype(np.float64)
        img = img.astype(np.int16)
    img += np.int16(intercept)
    return np.array(img, dtype=np.int16)


def lidc(data_path, out):
    """LIDC_3DDICOM_to_2Dpng.py: <patient>/<study>/<series>/*.dcm of series with more than 10
    files, in file-name order, one counter over all slices."""
    i = 0
    for patient in sorted(glob.glob(os.path.join(data_path, "*"))):
        name = os.path.basename(patient)
        for study in sorted(glob.glob(os.path.join(patient, "*"))):
            for series in sorted(glob.glob(os.path.join(study, "*"))):
                files = sorted(glob.glob(os.path.join(series, "*")))
                if len(files) <= 10:
                    continue
                for f in files:
                    if not f.endswith(".dcm"):
                        continue
                    img = get_pixels_hu(pydicom.dcmread(f))
                    img = (img - img.min()) / (img.max() - img.min()) * 255
                    cv2.imwrite(os.path.join(out, f"{name}_{i}.png"), img)
                    i += 1
    return i


def calculate_hash(image, hash_size=8):
    return np.ravel(imagehash.dhash(Image.open(image), hash_size=hash_size).hash)


def reduce_volume(image_volume_names, hash_array, save_folder, boarder=6):
    """The scripts' greedy loop over one volume: keep the first remaining slice, drop every
    remaining one within Hamming distance `boarder` of it; copy the kept ones."""
    kept = 0
    hash_array = np.asarray(hash_array)
    while len(image_volume_names) > 0:
        ref_hash = hash_array[0]
        xor = np.logical_xor(ref_hash, hash_array)
        total = xor.sum(1)
        matches = np.where(total <= boarder)[0]
        shutil.copy2(image_volume_names[matches[0]], save_folder)
        kept += 1
        hash_array = np.delete(hash_array, matches, axis=0)
        image_volume_names = np.delete(image_volume_names, matches, axis=0)
    return kept


def hash_petct(images_folder, save_folder):
    """Hash_PET-CT_Volume.py: volumes are runs of files whose `_`-separated second-last field
    is the study counter y, looked for from 1 upwards for each volume."""
    image_names = sorted(glob.glob(images_folder + "/*"))
    num = len(image_names)
    vol = len({p.split("_")[-2] for p in image_names})
    x, kept = 0, 0
    for i in range(1, vol + 1):
        image_volume_names, hash_array = [], []
        for y in range(1, vol + 1):
            while image_names[x].split("_")[-2] == str(y):
                image_volume_names.append(image_names[x])
                hash_array.append(calculate_hash(image_names[x]))
                x += 1
                if x == num:
                    break
            if image_volume_names:
                break
        kept += reduce_volume(image_volume_names, hash_array, save_folder)
    return num, kept


def hash_lidc(images_folder, save_folder):
    """Hash_LIDC_Volume.py: volume i is the run of files of patient LIDC-IDRI-{i:04}."""
    image_names = sorted(glob.glob(images_folder + "/*"))
    num = len(image_names)
    vol = len({p.split("I-")[-1].split("_")[0] for p in image_names})
    x, kept = 0, 0
    for i in range(1, vol + 1):
        image_volume_names, hash_array = [], []
        while image_names[x].split("I-")[-1].split("_")[0] == str(i).zfill(4):
            image_volume_names.append(image_names[x])
            hash_array.append(calculate_hash(image_names[x]))
            x += 1
            if x == num:
                break
        kept += reduce_volume(image_volume_names, hash_array, save_folder)
    return num, kept


def main():
    command, a, b = sys.argv[1:4]
    os.makedirs(b, exist_ok=True)
    start = time.perf_counter()
    scripts = {"petct": petct, "lidc": lidc, "hash-petct": hash_petct, "hash-lidc": hash_lidc}
    done = scripts[command](a, b)
    seconds = time.perf_counter() - start
    tool = f"python-{sys.version.split()[0]} numpy-{np.__version__} opencv-{cv2.__version__}"
    line = {"script": command, "seconds": seconds, "tool": tool}
    if command.startswith("hash"):
        line["slices"], line["kept"] = done
    else:
        line["slices"] = done
    print(json.dumps(line))


if __name__ == "__main__":
    main()
