//! The stages of `lim preprocess --mode paper` on the CPU, one thread, on the inputs of
//! `lim bench preprocess` (the sample chest CTs as a gzipped NIfTI volume and a DICOM series
//! of 48 files of 512 x 512, and the gzip NRRD the NIfTI volume is made from): decoding a
//! volume, the paper's arithmetic on a slice, PNG encoding, and a whole volume to PNG files;
//! throughput is in slices/s.

use std::path::{Path, PathBuf};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use lim::io::{Samples, dicom, png};
use lim::preprocess::{self, Mode, NoProgress, Pixels, intensity};

/// The first volume of each of `lim bench preprocess`'s layouts, built in `dir`: the NIfTI
/// file and the DICOM series folder.
fn inputs(dir: &Path) -> (PathBuf, PathBuf) {
    lim::bench::paper_layouts("data/samples".as_ref(), dir, 1).expect("the sample data");
    (
        dir.join("petct/PETCT_0000/study/CT.nii.gz"),
        dir.join("lidc/LIDC-IDRI-0001/study/series"),
    )
}

fn series(folder: &PathBuf) -> dicom::Series {
    let files = lim::io::walk(std::slice::from_ref(folder)).unwrap().files;
    let headers = files.iter().map(|f| dicom::scan(f).unwrap()).collect();
    dicom::group(headers, true).remove(0)
}

fn stages(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("lim-bench-preprocess-{}", std::process::id()));
    let (nifti, dicom_folder) = inputs(&dir);
    let series = series(&dicom_folder);
    let name = |what: &str| format!("{what}, CPU ({}), one thread", lim::bench::cpu_name());

    let volume = lim::io::read_volume(&nifti).unwrap();
    let dicom = dicom::read_series(&series, dicom::SliceOrder::FileName)
        .unwrap()
        .volume;
    let [columns, rows, slices] = volume.dims;
    let plane = columns * rows;

    let mut group = c.benchmark_group(name("decode a volume"));
    group.sample_size(10);
    group.throughput(Throughput::Elements(slices as u64));
    group.bench_function(BenchmarkId::from_parameter("NIfTI gzip"), |b| {
        b.iter(|| lim::io::read_volume(&nifti).unwrap())
    });
    group.throughput(Throughput::Elements(dicom.dims[2] as u64));
    group.bench_function(BenchmarkId::from_parameter("DICOM series"), |b| {
        b.iter(|| dicom::read_series(&series, dicom::SliceOrder::FileName).unwrap())
    });
    // The same chest CT as the NIfTI file, as the sample data hold it: gzip NRRD.
    let nrrd = Path::new("data/samples/ct_volumes/lung1_image.nrrd");
    group.throughput(Throughput::Elements(slices as u64));
    group.bench_function(BenchmarkId::from_parameter("NRRD gzip"), |b| {
        b.iter(|| lim::io::read_volume(nrrd).unwrap())
    });
    group.finish();

    let mut group = c.benchmark_group(name("the paper's arithmetic on a 512 x 512 slice"));
    group.throughput(Throughput::Elements(1));
    let Samples::I16(stored) = &volume.samples else {
        panic!("the sample CT is int16")
    };
    let middle = &stored[slices / 2 * plane..(slices / 2 + 1) * plane];
    let mut out = Vec::new();
    group.bench_function(BenchmarkId::from_parameter("PET-CT (NIfTI)"), |b| {
        b.iter(|| intensity::paper_nifti_stored(middle, volume.rescale[0], &mut out).unwrap())
    });
    let Samples::I32(stored) = &dicom.samples else {
        panic!("DICOM grey levels are integers")
    };
    let middle = &stored[..plane];
    group.bench_function(BenchmarkId::from_parameter("LIDC (DICOM)"), |b| {
        b.iter(|| intensity::paper_dicom(middle, Some(1.0), Some(-1024.0), &mut out))
    });
    group.finish();

    let mut group = c.benchmark_group(name("PNG encode a 512 x 512 slice"));
    group.throughput(Throughput::Elements(1));
    intensity::paper_dicom(middle, Some(1.0), Some(-1024.0), &mut out);
    let pixels = Pixels::Gray8(out);
    group.bench_function(BenchmarkId::from_parameter("8-bit grey"), |b| {
        b.iter(|| png::encode(columns, rows, &pixels).unwrap())
    });
    group.finish();

    let mut group = c.benchmark_group(name("a volume to PNG files, lim preprocess --mode paper"));
    group.sample_size(10);
    group.throughput(Throughput::Elements(slices as u64));
    let out = nifti.with_file_name("out");
    group.bench_function(BenchmarkId::from_parameter("NIfTI gzip"), |b| {
        b.iter(|| {
            let _ = std::fs::remove_dir_all(&out);
            let opts = preprocess::Options {
                mode: Mode::Paper,
                jobs: Some(1),
                ..preprocess::Options::new(&out)
            };
            preprocess::run(std::slice::from_ref(&nifti), &opts, &NoProgress).unwrap()
        })
    });
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, stages);
criterion_main!(benches);
