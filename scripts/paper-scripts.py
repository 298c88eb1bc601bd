#!/usr/bin/env python3
"""The paper's two preprocessing scripts, re-created line for line, timed in one process
(without Python's start-up), to measure `lim preprocess --mode paper` against on the same
inputs (README, "Preprocessing ... against the paper's Python scripts").

    paper-scripts.py layouts SAMPLES DIR   # DIR/petct: 10 <patient>/<study>/CT.nii.gz volumes,
                                           # DIR/lidc: 10 <patient>/<study>/<series>/*.dcm
                                           # series, from the sample chest CTs
    paper-scripts.py petct DATA OUT        # PET-CT_3DNifti_to_2Dpng.py's loop
    paper-scripts.py lidc DATA OUT         # LIDC_3DDICOM_to_2Dpng.py's loop

Each run prints one JSON line: {"script", "slices", "seconds"}. Needs numpy, nibabel,
pydicom, opencv-python-headless and pynrrd (for `layouts`).
"""
import glob
import json
import os
import shutil
import sys
import time

import cv2
import numpy as np


def layouts(samples, out):
    import nibabel as nib
    import nrrd

    for n in range(10):
        name = ["lung1_image", "lung2_image"][n % 2]
        data, _ = nrrd.read(os.path.join(samples, "ct_volumes", f"{name}.nrrd"))
        study = os.path.join(out, "petct", f"PETCT_{n:04}", "study")
        os.makedirs(study, exist_ok=True)
        nib.save(nib.Nifti1Image(data.astype(np.int16), np.eye(4)), os.path.join(study, "CT.nii.gz"))
        series = os.path.join(out, "lidc", f"LIDC-IDRI-{n + 1:04}", "study", "series")
        shutil.copytree(os.path.join(samples, "dicom", "lung1_series"), series, dirs_exist_ok=True)


def petct(data_path, out):
    """PET-CT_3DNifti_to_2Dpng.py: every <patient>/<study>/CT.nii.gz, a study counter n."""
    import nibabel as nib

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
    import pydicom

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


def main():
    command, a, b = sys.argv[1:4]
    if command == "layouts":
        layouts(a, b)
        return
    os.makedirs(b, exist_ok=True)
    start = time.perf_counter()
    slices = {"petct": petct, "lidc": lidc}[command](a, b)
    seconds = time.perf_counter() - start
    print(json.dumps({"script": command, "slices": slices, "seconds": seconds}))


if __name__ == "__main__":
    main()
