//! Labelled image sets for downstream evaluation, split into train, val and test:
//! - a MedMNIST `.npz` (`train_images`, `train_labels`, `val_*`, `test_*`; any size, grey
//!   `[N, H, W]` or RGB `[N, H, W, 3]`, labels `[N]` or `[N, 1]`), the format of the paper's
//!   OrganSMNIST task;
//! - a labels CSV, `path,label[,split]` (paths relative to the CSV; class names or indices;
//!   without a split column the rows are split 70/15/15, seeded);
//! - the paper's folder layout `root/{train,test}/{class}/*` (with `val/` if there is one,
//!   else a seeded 15 % of train, as the paper's brain task).
//!
//! Images are read when used ([`Sample::load`]), scaled to [0, 1], given the network's
//! channels, normalised as torchvision's `Normalize` and resized by area averaging as MONAI's
//! `Resize` (the paper's downstream transform, less-is-more.md §4.1).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::io::IoError;
use crate::io::npy::{self, Array, Elements};

/// The split names, in order.
pub const SPLITS: [&str; 3] = ["train", "val", "test"];

/// Where a sample's pixels are.
#[derive(Clone, Debug)]
pub enum Pixels {
    /// Image `index` of an in-memory `[N, H, W, C]` uint8 array.
    Array {
        data: Arc<Vec<u8>>,
        index: usize,
        height: usize,
        width: usize,
        channels: usize,
    },
    /// An image file (PNG, JPEG).
    File(PathBuf),
}

/// One labelled image.
#[derive(Clone, Debug)]
pub struct Sample {
    /// The file's path, or the row's index in its split.
    pub id: String,
    /// Index into [`Dataset::classes`].
    pub label: usize,
    pub pixels: Pixels,
}

/// How images become network input.
#[derive(Clone, Debug, PartialEq)]
pub struct Transform {
    /// 1 (grey; colour becomes its luma) or 3 (grey is replicated).
    pub channels: usize,
    /// Output side in pixels.
    pub size: usize,
    /// Per channel, applied after scaling to [0, 1].
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl Sample {
    /// The image as `[channels, size, size]` planes, normalised; an unreadable file's error
    /// names it.
    pub fn load(&self, t: &Transform) -> Result<Vec<f32>, IoError> {
        let (width, height, source_channels, values) = match &self.pixels {
            Pixels::Array {
                data,
                index,
                height,
                width,
                channels,
            } => {
                let len = height * width * channels;
                let pixels = &data[index * len..(index + 1) * len];
                (
                    *width,
                    *height,
                    *channels,
                    pixels.iter().map(|&v| v as f32 / 255.0).collect(),
                )
            }
            Pixels::File(path) => read_file(path)?,
        };
        let plane = width * height;
        let planes = normalised_planes(&values, source_channels, t.channels, &t.mean, &t.std);
        Ok(planes
            .chunks(plane)
            .flat_map(|p| resize_area(p, height, width, t.size, t.size))
            .collect())
    }
}

/// Interleaved pixels in [0, 1] with `source_channels` (1 or 3) as `channels` planes (grey
/// replicated, colour taken to its luma for one channel), each `(v - mean) / std`.
pub(crate) fn normalised_planes(
    values: &[f32],
    source_channels: usize,
    channels: usize,
    mean: &[f32],
    std: &[f32],
) -> Vec<f32> {
    let plane = values.len() / source_channels;
    let mut planes = vec![0.0; channels * plane];
    for c in 0..channels {
        for i in 0..plane {
            let px = &values[i * source_channels..(i + 1) * source_channels];
            let v = match (channels, source_channels) {
                (_, 1) => px[0],
                (1, _) => 0.299 * px[0] + 0.587 * px[1] + 0.114 * px[2],
                _ => px[c],
            };
            planes[c * plane + i] = (v - mean[c]) / std[c];
        }
    }
    planes
}

/// A file's pixels in [0, 1], interleaved, with its width, height and channels (1 or 3).
pub(crate) fn read_file(path: &Path) -> Result<(usize, usize, usize, Vec<f32>), IoError> {
    let image = crate::data::decode_image(path)?;
    let (w, h) = (image.width() as usize, image.height() as usize);
    Ok(if image.color().has_color() {
        (w, h, 3, image.to_rgb32f().into_raw())
    } else {
        (w, h, 1, image.to_luma32f().into_raw())
    })
}

/// Area resampling of one `[height, width]` plane to `[out_h, out_w]`: each output pixel is
/// the mean of the input window `floor(i * in / out) .. ceil((i + 1) * in / out)` in each
/// axis, PyTorch's `adaptive_avg_pool2d`, which MONAI's `Resize(mode="area")` calls.
pub fn resize_area(
    plane: &[f32],
    height: usize,
    width: usize,
    out_h: usize,
    out_w: usize,
) -> Vec<f32> {
    let window = |i: usize, input: usize, output: usize| {
        (i * input / output, ((i + 1) * input).div_ceil(output))
    };
    // Columns first, then rows: a mean over a rectangle is the mean of its row means.
    let mut columns = vec![0.0; height * out_w];
    for y in 0..height {
        for x in 0..out_w {
            let (a, b) = window(x, width, out_w);
            columns[y * out_w + x] =
                plane[y * width + a..y * width + b].iter().sum::<f32>() / (b - a) as f32;
        }
    }
    let mut out = vec![0.0; out_h * out_w];
    for y in 0..out_h {
        let (a, b) = window(y, height, out_h);
        for x in 0..out_w {
            out[y * out_w + x] =
                (a..b).map(|r| columns[r * out_w + x]).sum::<f32>() / (b - a) as f32;
        }
    }
    out
}

/// A labelled data set, split three ways.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// Where it came from, for reports.
    pub source: PathBuf,
    /// Class names; labels index them.
    pub classes: Vec<String>,
    /// Train, val and test, as [`SPLITS`].
    pub splits: [Vec<Sample>; 3],
}

impl Dataset {
    /// Opens a `.npz`, a labels `.csv` or a `{train,test}/{class}` folder. `seed` draws the
    /// validation split where the data has none.
    pub fn open(path: &Path, seed: u64) -> Result<Dataset, IoError> {
        let extension = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        let dataset = match extension.as_deref() {
            _ if path.is_dir() => from_folders(path, seed)?,
            Some("npz") => from_npz(path)?,
            Some("csv") => from_csv(path, seed)?,
            _ => {
                return Err(IoError::unsupported(
                    path,
                    "a data set is a MedMNIST .npz, a labels .csv or a folder with train/ and test/",
                ));
            }
        };
        dataset.check()?;
        Ok(dataset)
    }

    /// The split named `name`.
    pub fn split(&self, name: &str) -> &[Sample] {
        &self.splits[SPLITS
            .iter()
            .position(|&s| s == name)
            .expect("a split name")]
    }

    /// Keeps `n` samples of every split drawn at random (seeded; all of a smaller split),
    /// stratified: each class keeps its share, at least one sample. They stay in their order.
    pub fn limit(&mut self, n: usize, seed: u64) -> Result<(), IoError> {
        let mut rng = StdRng::seed_from_u64(seed);
        let classes = self.classes.len();
        for split in &mut self.splits {
            if split.len() <= n {
                continue;
            }
            let mut order: Vec<usize> = (0..split.len()).collect();
            order.shuffle(&mut rng);
            let mut counts = vec![0; classes];
            for s in split.iter() {
                counts[s.label] += 1;
            }
            // Largest remainders: the shares' floors, then one more to the largest fractions.
            let mut quota: Vec<usize> = counts.iter().map(|&c| n * c / split.len()).collect();
            let mut by_remainder: Vec<usize> = (0..classes).collect();
            by_remainder.sort_by_key(|&c| std::cmp::Reverse(n * counts[c] % split.len()));
            let short = n - quota.iter().sum::<usize>();
            for &c in by_remainder.iter().take(short) {
                quota[c] += 1;
            }
            for (q, &c) in quota.iter_mut().zip(&counts) {
                *q = (*q).max(1.min(c));
            }
            let mut taken = vec![0; classes];
            let mut keep = vec![false; split.len()];
            for &i in &order {
                let label = split[i].label;
                if taken[label] < quota[label] {
                    taken[label] += 1;
                    keep[i] = true;
                }
            }
            let mut missing = n.saturating_sub(taken.iter().sum());
            for &i in &order {
                if missing > 0 && !keep[i] {
                    keep[i] = true;
                    missing -= 1;
                }
            }
            let mut index = 0;
            split.retain(|_| {
                index += 1;
                keep[index - 1]
            });
        }
        self.check()
    }

    /// Every split has samples of every class.
    fn check(&self) -> Result<(), IoError> {
        for (name, split) in SPLITS.iter().zip(&self.splits) {
            let mut seen = vec![false; self.classes.len()];
            for s in split {
                seen[s.label] = true;
            }
            if let Some(c) = seen.iter().position(|&s| !s) {
                return Err(IoError::invalid(
                    &self.source,
                    format!(
                        "class `{}` has no sample in the {name} split ({} samples)",
                        self.classes[c],
                        split.len()
                    ),
                ));
            }
        }
        Ok(())
    }
}

fn from_npz(path: &Path) -> Result<Dataset, IoError> {
    let mut arrays = npy::read_npz(path)?;
    let mut take = |key: &str| {
        arrays.remove(key).ok_or_else(|| {
            IoError::invalid(
                path,
                format!(
                    "no `{key}` array (a MedMNIST .npz has {{train,val,test}}_{{images,labels}})"
                ),
            )
        })
    };
    let mut splits: [Vec<Sample>; 3] = Default::default();
    let mut max_label = 0;
    for (split, name) in splits.iter_mut().zip(SPLITS) {
        let images = take(&format!("{name}_images"))?;
        let labels = take(&format!("{name}_labels"))?;
        let labels = npz_labels(path, name, labels)?;
        let (n, height, width, channels) = match images.shape[..] {
            [n, h, w] => (n, h, w, 1),
            [n, h, w, c @ (1 | 3)] => (n, h, w, c),
            _ => {
                return Err(IoError::invalid(
                    path,
                    format!(
                        "{name}_images has shape {:?}, not [N, H, W] or [N, H, W, 1 or 3]",
                        images.shape
                    ),
                ));
            }
        };
        let Elements::U8(data) = images.elements else {
            return Err(IoError::unsupported(
                path,
                format!("{name}_images is not uint8"),
            ));
        };
        if labels.len() != n {
            return Err(IoError::invalid(
                path,
                format!("{name}: {n} images but {} labels", labels.len()),
            ));
        }
        let data = Arc::new(data);
        for (index, label) in labels.into_iter().enumerate() {
            max_label = max_label.max(label);
            split.push(Sample {
                id: index.to_string(),
                label,
                pixels: Pixels::Array {
                    data: data.clone(),
                    index,
                    height,
                    width,
                    channels,
                },
            });
        }
    }
    // Every class must have samples (`check`): more classes than samples is a broken label.
    let samples: usize = splits.iter().map(Vec::len).sum();
    if max_label >= samples {
        return Err(IoError::invalid(
            path,
            format!("a label of {max_label}: more classes than the {samples} samples"),
        ));
    }
    Ok(Dataset {
        source: path.into(),
        classes: (0..=max_label).map(|c| c.to_string()).collect(),
        splits,
    })
}

/// Class indices from a `[N]` or `[N, 1]` integer array.
fn npz_labels(path: &Path, split: &str, labels: Array) -> Result<Vec<usize>, IoError> {
    if !matches!(labels.shape[..], [_] | [_, 1]) {
        return Err(IoError::unsupported(
            path,
            format!(
                "{split}_labels has shape {:?}: multi-label tasks are not supported",
                labels.shape
            ),
        ));
    }
    let values: Vec<i64> = match labels.elements {
        Elements::U8(v) => v.into_iter().map(i64::from).collect(),
        Elements::U16(v) => v.into_iter().map(i64::from).collect(),
        Elements::Int(v) => v,
        Elements::Float(_) => {
            return Err(IoError::unsupported(
                path,
                format!("{split}_labels are not integers"),
            ));
        }
    };
    values
        .into_iter()
        .map(|v| {
            usize::try_from(v).map_err(|_| {
                IoError::invalid(path, format!("{split}_labels holds {v}, not a class index"))
            })
        })
        .collect()
}

/// Sorts class names as numbers where they all are, else as text.
fn sort_classes(classes: &mut [String]) {
    if classes.iter().all(|c| c.parse::<i64>().is_ok()) {
        classes.sort_by_key(|c| c.parse::<i64>().unwrap());
    } else {
        classes.sort();
    }
}

/// Splits `rows` into train, val and test: the given fractions of val and test, drawn by a
/// seeded shuffle, the rest train in their order.
fn seeded_split<T: Clone>(rows: Vec<T>, val: f64, test: f64, seed: u64) -> [Vec<T>; 3] {
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.shuffle(&mut StdRng::seed_from_u64(seed));
    let n_val = (val * rows.len() as f64) as usize;
    let n_test = (test * rows.len() as f64) as usize;
    let mut which = vec![0; rows.len()];
    for &i in &order[..n_val] {
        which[i] = 1;
    }
    for &i in &order[n_val..n_val + n_test] {
        which[i] = 2;
    }
    let mut out: [Vec<T>; 3] = Default::default();
    for (row, w) in rows.into_iter().zip(which) {
        out[w].push(row);
    }
    out
}

fn from_csv(path: &Path, seed: u64) -> Result<Dataset, IoError> {
    let text = std::fs::read_to_string(path).map_err(|e| IoError::io(path, e))?;
    let root = path.parent().unwrap_or(Path::new("."));
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let (_, header) = lines
        .next()
        .ok_or_else(|| IoError::invalid(path, "the CSV is empty"))?;
    let columns: Vec<String> = header
        .split(',')
        .map(|c| c.trim().to_ascii_lowercase())
        .collect();
    let column = |name: &str| columns.iter().position(|c| c == name);
    let (Some(path_col), Some(label_col)) = (column("path"), column("label")) else {
        return Err(IoError::invalid(
            path,
            format!("the header is `{header}`; it needs `path` and `label` (and may have `split`)"),
        ));
    };
    let split_col = column("split");
    let mut rows = Vec::new();
    for (number, line) in lines {
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let field = |i: usize| {
            fields
                .get(i)
                .copied()
                .filter(|f| !f.is_empty())
                .ok_or_else(|| {
                    IoError::invalid(path, format!("line {}: no `{}`", number + 1, columns[i]))
                })
        };
        let file = root.join(field(path_col)?);
        if !file.is_file() {
            return Err(IoError::invalid(
                path,
                format!("line {}: {} does not exist", number + 1, file.display()),
            ));
        }
        let split = match split_col {
            Some(i) => {
                let s = field(i)?.to_ascii_lowercase();
                let s = if s == "valid" || s == "validation" {
                    "val".into()
                } else {
                    s
                };
                Some(SPLITS.iter().position(|&n| n == s).ok_or_else(|| {
                    IoError::invalid(
                        path,
                        format!("line {}: split `{s}` is not train, val or test", number + 1),
                    )
                })?)
            }
            None => None,
        };
        rows.push((file, field(label_col)?.to_string(), split));
    }
    let mut classes: Vec<String> = rows.iter().map(|r| r.1.clone()).collect();
    sort_classes(&mut classes);
    classes.dedup();
    let sample = |(file, label, _): (PathBuf, String, Option<usize>)| Sample {
        id: file.display().to_string(),
        label: classes.iter().position(|c| *c == label).unwrap(),
        pixels: Pixels::File(file),
    };
    let splits = if split_col.is_some() {
        let mut splits: [Vec<Sample>; 3] = Default::default();
        for row in rows {
            splits[row.2.unwrap()].push(sample(row));
        }
        splits
    } else {
        seeded_split(rows, 0.15, 0.15, seed).map(|rows| rows.into_iter().map(sample).collect())
    };
    Ok(Dataset {
        source: path.into(),
        classes,
        splits,
    })
}

fn from_folders(root: &Path, seed: u64) -> Result<Dataset, IoError> {
    let listed = |split: &str| -> Result<Option<Vec<(String, PathBuf)>>, IoError> {
        let dir = root.join(split);
        if !dir.is_dir() {
            return Ok(None);
        }
        let mut out = Vec::new();
        let walked = crate::io::walk(std::slice::from_ref(&dir))?;
        if let Some(e) = walked.unreadable.into_iter().next() {
            return Err(e);
        }
        for file in walked.files {
            if !crate::data::is_image(&file) {
                continue;
            }
            let relative = file.strip_prefix(&dir).unwrap();
            if relative.components().count() < 2 {
                return Err(IoError::invalid(
                    &file,
                    "an image directly in the split folder; put it in its class's folder",
                ));
            }
            let class = relative
                .components()
                .next()
                .unwrap()
                .as_os_str()
                .to_string_lossy()
                .into_owned();
            out.push((class, file));
        }
        Ok(Some(out))
    };
    let missing = |split: &str| {
        IoError::invalid(
            root,
            format!(
                "no `{split}/` folder (the layout is {{train,test}}/{{class}}/*, with an optional val/)"
            ),
        )
    };
    let train = listed("train")?.ok_or_else(|| missing("train"))?;
    let test = listed("test")?.ok_or_else(|| missing("test"))?;
    let val = listed("val")?;
    let mut classes: Vec<String> = train.iter().map(|r| r.0.clone()).collect();
    sort_classes(&mut classes);
    classes.dedup();
    let sample = |(class, file): (String, PathBuf)| -> Result<Sample, IoError> {
        let label = classes.iter().position(|c| *c == class).ok_or_else(|| {
            IoError::invalid(
                &file,
                format!("class `{class}` is not one of the training classes {classes:?}"),
            )
        })?;
        Ok(Sample {
            id: file.display().to_string(),
            label,
            pixels: Pixels::File(file),
        })
    };
    let (train, val) = match val {
        Some(val) => (train, val),
        None => {
            let [train, val, _] = seeded_split(train, 0.15, 0.0, seed);
            (train, val)
        }
    };
    let collect =
        |rows: Vec<(String, PathBuf)>| rows.into_iter().map(sample).collect::<Result<Vec<_>, _>>();
    Ok(Dataset {
        source: root.into(),
        classes: classes.clone(),
        splits: [collect(train)?, collect(val)?, collect(test)?],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn area_resize_averages_adaptive_windows() {
        // 5 -> 3 takes windows [0, 2), [1, 4), [3, 5): PyTorch's adaptive_avg_pool2d.
        let row = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(resize_area(&row, 1, 5, 1, 3), vec![1.5, 3.0, 4.5]);
        // Upsampling by a whole factor replicates pixels (MONAI's 28 -> 224 for MedMNIST).
        let plane = [1.0, 2.0, 3.0, 4.0];
        let up = resize_area(&plane, 2, 2, 4, 4);
        assert_eq!(&up[..8], &[1.0, 1.0, 2.0, 2.0, 1.0, 1.0, 2.0, 2.0]);
        assert_eq!(&up[8..], &[3.0, 3.0, 4.0, 4.0, 3.0, 3.0, 4.0, 4.0]);
        // Rows and columns at once: 4 x 4 -> 2 x 2 is the mean of each 2 x 2 block.
        let plane: Vec<f32> = (0..16).map(|v| v as f32).collect();
        assert_eq!(resize_area(&plane, 4, 4, 2, 2), vec![2.5, 4.5, 10.5, 12.5]);
    }

    #[test]
    fn samples_take_the_network_channels_and_normalisation() {
        let sample = Sample {
            id: "0".into(),
            label: 0,
            pixels: Pixels::Array {
                data: Arc::new(vec![0, 255, 51, 102]),
                index: 0,
                height: 2,
                width: 2,
                channels: 1,
            },
        };
        let t = Transform {
            channels: 3,
            size: 2,
            mean: vec![0.5; 3],
            std: vec![0.5; 3],
        };
        let planes = sample.load(&t).unwrap();
        assert_eq!(planes.len(), 12);
        for c in 0..3 {
            assert_eq!(&planes[c * 4..c * 4 + 4], &[-1.0, 1.0, -0.6, -0.19999999]);
        }
        let rgb = Sample {
            pixels: Pixels::Array {
                data: Arc::new(vec![255, 0, 0]),
                index: 0,
                height: 1,
                width: 1,
                channels: 3,
            },
            ..sample
        };
        let luma = rgb
            .load(&Transform {
                channels: 1,
                size: 1,
                mean: vec![0.0],
                std: vec![1.0],
            })
            .unwrap();
        assert_eq!(luma, vec![0.299]);
    }

    #[test]
    fn seeded_split_is_a_partition() {
        let [train, val, test] = seeded_split((0..100).collect(), 0.15, 0.15, 3);
        assert_eq!((train.len(), val.len(), test.len()), (70, 15, 15));
        let mut all: Vec<i32> = train.iter().chain(&val).chain(&test).copied().collect();
        all.sort();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
        assert_eq!(seeded_split((0..100).collect(), 0.15, 0.15, 3)[1], val);
        assert_ne!(seeded_split((0..100).collect(), 0.15, 0.15, 4)[1], val);
    }
}
