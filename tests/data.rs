//! Finding and loading training slices: folders at any depth, `lim reduce` output, path
//! lists, unreadable files named and skipped, grey decoding of 8- and 16-bit PNG and JPEG,
//! and the seeded, prefetched batch order.

use std::path::{Path, PathBuf};

use lim::data::{GreyImage, Loader, LoaderOptions, epoch_order, find_slices};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lim-data-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write_png(path: &Path, width: u32, height: u32, seed: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let image = image::GrayImage::from_fn(width, height, |x, y| {
        image::Luma([((x * 7 + y * 13 + seed * 31) % 256) as u8])
    });
    image.save(path).unwrap();
}

#[test]
fn slices_are_found_in_folders_lists_and_reduce_output() {
    let dir = temp_dir("find");
    write_png(&dir.join("a/vol1/0001.png"), 8, 8, 1);
    write_png(&dir.join("a/vol1/0000.png"), 8, 8, 2);
    write_png(&dir.join("a/vol2/deep/x.png"), 8, 8, 3);
    std::fs::write(dir.join("a/vol2/notes.txt"), "not a slice").unwrap();
    std::fs::write(dir.join("a/manifest.jsonl"), "{}\n").unwrap();
    std::fs::write(dir.join("a/vol2/broken.png"), b"\x89PNG\r\n\x1a\nrubbish").unwrap();
    // A `lim reduce` output: kept slices, a dropped one that was never copied, a sheet.
    let reduced = dir.join("reduced");
    write_png(&reduced.join("v/0.png"), 8, 8, 4);
    write_png(&reduced.join("sheets/v.png"), 8, 8, 5);
    std::fs::write(
        reduced.join("reduction.jsonl"),
        "{\"path\":\"v/0.png\",\"volume\":\"v\",\"kept\":true}\n\
         {\"path\":\"v/1.png\",\"volume\":\"v\",\"kept\":false}\n\
         {\"path\":\"v/2.png\",\"volume\":\"v\",\"kept\":true}\n",
    )
    .unwrap();
    let list = dir.join("list.txt");
    std::fs::write(
        &list,
        "# slices\na/vol1/0000.png\n\nmissing.png\na/vol2/notes.txt\n",
    )
    .unwrap();

    let found = find_slices(&[dir.join("a"), reduced.clone(), list])
        .unwrap()
        .checked();
    let names: Vec<String> = found
        .files
        .iter()
        .map(|p| p.strip_prefix(&dir).unwrap().display().to_string())
        .collect();
    assert_eq!(
        names,
        [
            "a/vol1/0000.png",
            "a/vol1/0001.png",
            "a/vol2/deep/x.png",
            "reduced/v/0.png",
            "a/vol1/0000.png"
        ]
    );
    let skipped: Vec<(String, &str)> = found
        .skipped
        .iter()
        .map(|s| {
            (
                s.path.strip_prefix(&dir).unwrap().display().to_string(),
                s.why.as_str(),
            )
        })
        .collect();
    let why = |name: &str| {
        skipped
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("{name} not among the skipped {skipped:?}"))
            .1
    };
    assert!(why("a/vol2/notes.txt").contains("not a PNG or JPEG"));
    assert!(why("a/vol2/broken.png").contains("not a readable image"));
    assert!(why("reduced/v/2.png").contains("not in the folder"));
    assert!(why("missing.png").contains("not found"));
    assert_eq!(skipped.len(), 5, "{skipped:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn grey_images_decode_to_sixteen_bit_values() {
    let dir = temp_dir("grey");
    let eight = dir.join("8.png");
    image::GrayImage::from_raw(2, 1, vec![0, 255])
        .unwrap()
        .save(&eight)
        .unwrap();
    let sixteen = dir.join("16.png");
    image::ImageBuffer::<image::Luma<u16>, _>::from_raw(2, 1, vec![1000u16, 65535])
        .unwrap()
        .save(&sixteen)
        .unwrap();
    let rgb = dir.join("rgb.png");
    image::RgbImage::from_raw(1, 1, vec![255, 0, 0])
        .unwrap()
        .save(&rgb)
        .unwrap();
    assert_eq!(GreyImage::open(&eight).unwrap().pixels, [0, 65535]);
    assert_eq!(GreyImage::open(&sixteen).unwrap().pixels, [1000, 65535]);
    // Pillow's luma of pure red: 0.299 of full scale.
    assert_eq!(
        GreyImage::open(&rgb).unwrap().pixels,
        [(0.299f64 * 65535.0).round() as u16]
    );
    let err = GreyImage::open(&dir.join("none.png"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("none.png"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn batches_follow_the_seeded_order_drop_the_remainder_and_resume_anywhere() {
    let dir = temp_dir("loader");
    let files: Vec<PathBuf> = (0..11)
        .map(|i| {
            let path = dir.join(format!("{i:02}.png"));
            write_png(&path, 3 + i, 2, i);
            path
        })
        .collect();
    let opts = LoaderOptions {
        batch: 4,
        seed: 7,
        workers: 2,
        prefetch: 2,
        part: (0, 1),
    };
    let mut loader = Loader::new(files.clone(), &opts, 0, 0).unwrap();
    assert_eq!(loader.batches_per_epoch(), 2);
    // Widths identify the files: file i is 3 + i pixels wide.
    let widths = |images: &[GreyImage]| images.iter().map(|g| g.width - 3).collect::<Vec<_>>();
    let mut seen = Vec::new();
    for _ in 0..6 {
        let batch = loader.next_batch();
        assert!(batch.failed.is_empty());
        assert_eq!(batch.images.len(), 4);
        seen.push((batch.epoch, batch.index, widths(&batch.images)));
    }
    for (epoch, index, members) in &seen {
        let order = epoch_order(11, 7, *epoch);
        assert_eq!(members, &order[index * 4..(index + 1) * 4]);
    }
    assert_eq!(
        seen.iter().map(|s| (s.0, s.1)).collect::<Vec<_>>(),
        [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)]
    );
    // Three replicas decode their shares of each batch (4 = 1 + 1 + 2 slices), in order.
    for (epoch, index, members) in &seen[..3] {
        let mut joined = Vec::new();
        for part in 0..3 {
            let share = LoaderOptions {
                part: (part, 3),
                ..opts.clone()
            };
            let batch = Loader::new(files.clone(), &share, *epoch, *index)
                .unwrap()
                .next_batch();
            assert_eq!(batch.images.len(), [1, 1, 2][part]);
            joined.extend(widths(&batch.images));
        }
        assert_eq!(&joined, members);
    }
    assert_ne!(epoch_order(11, 7, 0), epoch_order(11, 7, 1));
    assert_ne!(epoch_order(11, 7, 0), epoch_order(11, 8, 0));
    // A loader started at epoch 1, batch 1 continues exactly there.
    let mut resumed = Loader::new(files.clone(), &opts, 1, 1).unwrap();
    let batch = resumed.next_batch();
    assert_eq!((batch.epoch, batch.index, widths(&batch.images)), seen[3]);
    drop(resumed);
    // A file whose pixels cannot be decoded is reported, and its batch is short.
    let broken = epoch_order(11, 7, 0)[2];
    let whole = std::fs::read(&files[broken]).unwrap();
    std::fs::write(&files[broken], &whole[..whole.len() - 20]).unwrap();
    assert!(GreyImage::open(&files[broken]).is_err());
    let mut loader = Loader::new(files.clone(), &opts, 0, 0).unwrap();
    let mut failures = 0;
    for _ in 0..2 {
        let batch = loader.next_batch();
        failures += batch.failed.len();
        assert_eq!(batch.images.len() + batch.failed.len(), 4);
        for e in &batch.failed {
            assert!(e.to_string().contains(&format!("{broken:02}.png")), "{e}");
        }
    }
    assert_eq!(failures, 1);
    assert!(Loader::new(files[..3].to_vec(), &opts, 0, 0).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}
