//! SwAV's multi-crop augmentation: the GPU's crops against the f64 reference on awkward
//! images and views, the same crops when tensors and sources must be split over bindings, and
//! the crop boxes' statistics against torchvision's own `RandomResizedCrop` draws
//! (tests/fixtures/swav/crop_stats.py).

mod common;

use common::{assert_close, gpu, gpu_binding_at_most};
use lim::data::GreyImage;
use lim::ssl::{CropGroup, MultiCrop, View, random_resized_crop, reference};
use rand::SeedableRng;
use rand::rngs::StdRng;

/// A grey image with structure at every scale (a gradient, stripes and a bright square).
fn image(width: usize, height: usize, seed: u64) -> GreyImage {
    let noise = common::random(width * height, seed);
    let pixels = (0..width * height)
        .map(|i| {
            let (x, y) = (i % width, i / width);
            let v = 0.3 * x as f32 / width as f32
                + 0.2 * ((y / 3) % 2) as f32
                + if (width / 3..width / 2).contains(&x) && y < height / 2 {
                    0.3
                } else {
                    0.0
                }
                + 0.1 * noise[i].abs();
            (v.clamp(0.0, 1.0) * 65535.0) as u16
        })
        .collect();
    GreyImage {
        width,
        height,
        pixels,
    }
}

fn small_multicrop(channels: usize) -> MultiCrop {
    MultiCrop {
        groups: vec![
            CropGroup {
                size: 19,
                count: 2,
                scale: (0.6, 1.0),
            },
            CropGroup {
                size: 8,
                count: 3,
                scale: (0.1, 0.4),
            },
        ],
        channels,
        ..MultiCrop::paper()
    }
}

fn assert_crops_equal_reference(
    multicrop: &MultiCrop,
    images: &[GreyImage],
    views: &[Vec<View>],
    got: &[lim::Tensor],
) {
    let b = images.len();
    for ((group, views), tensor) in multicrop.groups.iter().zip(views).zip(got) {
        let s = group.size;
        assert_eq!(tensor.shape(), [group.count * b, multicrop.channels, s, s]);
        let values = tensor.to_vec().unwrap();
        for (row, view) in views.iter().enumerate() {
            let want = reference::crop(
                &images[row % b],
                view,
                s,
                multicrop.mean as f64,
                multicrop.std as f64,
            );
            for ch in 0..multicrop.channels {
                let at = (row * multicrop.channels + ch) * s * s;
                assert_close(
                    &format!("{s} px crop {row} ({view:?}), channel {ch}"),
                    &values[at..at + s * s],
                    &want,
                    |_| 2e-4,
                );
            }
        }
    }
}

/// Random views of odd-sized images, 8- and 16-bit values, a 1 x 1 image, one and three
/// channels.
#[test]
fn crops_equal_the_reference() {
    let gpu = gpu();
    let images = vec![
        image(37, 53, 1),
        image(64, 64, 2),
        image(300, 21, 3),
        GreyImage {
            width: 1,
            height: 1,
            pixels: vec![40000],
        },
        GreyImage {
            width: 9,
            height: 6,
            pixels: (0..54).map(|i| (i * 37 % 256) as u16 * 257).collect(),
        },
    ];
    let sizes: Vec<_> = images.iter().map(|i| (i.width, i.height)).collect();
    for channels in [3, 1] {
        let multicrop = small_multicrop(channels);
        let views = multicrop.sample(&mut StdRng::seed_from_u64(channels as u64), &sizes);
        let got = multicrop.apply(&gpu, &images, &views).unwrap();
        assert_crops_equal_reference(&multicrop, &images, &views, &got);
    }
}

/// Each transform alone and in both orders, large blurs, crops that upsample and crops that
/// shrink twenty-fold.
#[test]
fn every_transform_equals_the_reference() {
    let gpu = gpu();
    let images = vec![image(200, 120, 4), image(31, 17, 5)];
    let plain = View {
        top: 3,
        left: 2,
        height: 14,
        width: 12,
        ..View::default()
    };
    let cases = [
        plain,
        View {
            brightness: 1.37,
            ..plain
        },
        View {
            contrast: 0.62,
            ..plain
        },
        View {
            brightness: 0.7,
            contrast: 1.4,
            ..plain
        },
        View {
            brightness: 0.7,
            contrast: 1.4,
            contrast_first: true,
            ..plain
        },
        View {
            sigma: 0.1,
            ..plain
        },
        View {
            sigma: 3.3,
            brightness: 1.2,
            ..plain
        },
        View {
            top: 0,
            left: 0,
            height: 17,
            width: 31,
            sigma: 1.0,
            ..View::default()
        },
        View {
            top: 1,
            left: 5,
            height: 3,
            width: 2,
            ..View::default()
        },
    ];
    let multicrop = MultiCrop {
        groups: vec![CropGroup {
            size: 9,
            count: cases.len(),
            scale: (0.1, 1.0),
        }],
        ..MultiCrop::paper()
    };
    // Every case on both images: crop c of image b is row c * 2 + b.
    let views: Vec<View> = cases.iter().flat_map(|&v| [v, v]).collect();
    let got = multicrop
        .apply(&gpu, &images, std::slice::from_ref(&views))
        .unwrap();
    assert_crops_equal_reference(&multicrop, &images, &[views], &got);
    // The first image, shrunk twenty-fold.
    let wide = View {
        top: 0,
        left: 0,
        height: 120,
        width: 200,
        ..View::default()
    };
    let one = MultiCrop {
        groups: vec![CropGroup {
            size: 6,
            count: 1,
            scale: (0.1, 1.0),
        }],
        ..MultiCrop::paper()
    };
    let got = one.apply(&gpu, &images[..1], &[vec![wide]]).unwrap();
    assert_crops_equal_reference(&one, &images[..1], &[vec![wide]], &got);
}

/// With small bindings the crops go in waves: first with every source in one binding and
/// several waves of output rows, then with sources too large for one binding.
#[test]
fn crops_split_over_bindings_equal_the_unsplit_ones() {
    let images: Vec<GreyImage> = (0..5).map(|i| image(40 + i, 33, 10 + i as u64)).collect();
    let sizes: Vec<_> = images.iter().map(|i| (i.width, i.height)).collect();
    let multicrop = small_multicrop(3);
    let views = multicrop.sample(&mut StdRng::seed_from_u64(9), &sizes);
    let whole = multicrop.apply(&gpu(), &images, &views).unwrap();
    let whole: Vec<Vec<f32>> = whole.iter().map(|t| t.to_vec().unwrap()).collect();
    // 19 px rows are 4332 bytes: 8 KiB holds one; the sources (about 14 KiB) fit 16 KiB.
    for limit in [16 << 10, 8 << 10] {
        let small = gpu_binding_at_most(limit);
        let split = multicrop.apply(&small, &images, &views).unwrap();
        for (a, b) in split.iter().zip(&whole) {
            assert_eq!(&a.to_vec().unwrap(), b, "binding limit {limit}");
        }
    }
}

#[test]
fn the_same_seed_draws_the_same_views_inside_each_image() {
    let multicrop = MultiCrop::paper();
    let sizes = [(512, 512), (300, 41), (3, 2)];
    let draw = |seed| multicrop.sample(&mut StdRng::seed_from_u64(seed), &sizes);
    assert_eq!(draw(5), draw(5));
    assert_ne!(draw(5), draw(6));
    for (group, views) in multicrop.groups.iter().zip(draw(5)) {
        assert_eq!(views.len(), group.count * sizes.len());
        for (row, v) in views.iter().enumerate() {
            let (w, h) = sizes[row % sizes.len()];
            assert!(v.width > 0 && v.height > 0, "{v:?}");
            assert!((v.left + v.width) as usize <= w && (v.top + v.height) as usize <= h);
            assert!(v.brightness == 1.0 || (0.6..=1.4).contains(&v.brightness));
            assert!(v.sigma == 0.0 || (0.1..=2.0).contains(&v.sigma));
        }
    }
}

/// Over 20,000 draws per case, the mean and spread of each box coordinate and the share of
/// centre fallbacks agree with torchvision's within sampling error.
#[test]
fn crop_boxes_follow_torchvisions_rule() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/swav/crop_stats.json"
    );
    let stats: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let ratio = (0.75, 4.0 / 3.0);
    let mut rng = StdRng::seed_from_u64(2024);
    for case in stats["cases"].as_array().unwrap() {
        let num = |k: &str| case[k].as_f64().unwrap();
        let (width, height, n) = (num("width") as usize, num("height") as usize, num("draws"));
        let scale = (
            case["scale"][0].as_f64().unwrap() as f32,
            case["scale"][1].as_f64().unwrap() as f32,
        );
        let boxes: Vec<[u32; 4]> = (0..n as usize)
            .map(|_| random_resized_crop(&mut rng, width, height, scale, ratio))
            .collect();
        let fallback = random_resized_crop(
            &mut StdRng::seed_from_u64(0),
            width,
            height,
            (2.0, 2.0),
            ratio,
        );
        for field in 0..4 {
            let values: Vec<f64> = boxes.iter().map(|b| b[field] as f64).collect();
            let mean = values.iter().sum::<f64>() / n;
            let std = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
            let (tv_mean, tv_std) = (
                case["mean"][field].as_f64().unwrap(),
                case["std"][field].as_f64().unwrap(),
            );
            let error = 4.0 * (2.0 * tv_std * tv_std / n).sqrt() + 1e-9;
            assert!(
                (mean - tv_mean).abs() <= error,
                "{width}x{height} {scale:?} field {field}: mean {mean}, torchvision {tv_mean}"
            );
            assert!(
                (std - tv_std).abs() <= 0.05 * tv_std + 1e-9,
                "{width}x{height} {scale:?} field {field}: std {std}, torchvision {tv_std}"
            );
        }
        let share = boxes.iter().filter(|&&b| b == fallback).count() as f64 / n;
        let want = num("fallback");
        let error = 4.0 * (2.0 * want * (1.0 - want) / n).sqrt() + 1e-9;
        assert!(
            (share - want).abs() <= error,
            "{width}x{height} {scale:?}: fallback share {share}, torchvision {want}"
        );
    }
}

#[test]
fn crops_outside_their_image_are_refused() {
    let multicrop = small_multicrop(3);
    let images = vec![image(10, 10, 1)];
    let mut views = multicrop.sample(&mut StdRng::seed_from_u64(1), &[(10, 10)]);
    views[1][0].left = 9;
    views[1][0].width = 4;
    let err = multicrop
        .apply(&gpu(), &images, &views)
        .unwrap_err()
        .to_string();
    assert!(err.contains("outside"), "{err}");
}
