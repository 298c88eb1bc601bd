//! Matmul variants against the CPU reference: every transpose, batched and broadcast
//! operands, awkward shapes, and grids wider than 65,535 workgroups in a dimension.

mod common;

use common::{EPS, assert_close, f64s, gpu, random};
use half::f16;
use lim::ops::matmul::{MatmulDims, MatmulOptions, MatmulVariant, reference};
use lim::{DType, Error, Tensor};

const TRANSPOSES: [MatmulOptions; 4] = [
    MatmulOptions {
        trans_a: false,
        trans_b: false,
    },
    MatmulOptions {
        trans_a: true,
        trans_b: false,
    },
    MatmulOptions {
        trans_a: false,
        trans_b: true,
    },
    MatmulOptions {
        trans_a: true,
        trans_b: true,
    },
];

/// (m, n, k): ones, odd and prime sizes, multiples of 4 (for the vec4 variants) that are not
/// multiples of any tile, and a few whole tiles.
const SIZES: &[(usize, usize, usize)] = &[
    (1, 1, 1),
    (1, 7, 1),
    (3, 5, 7),
    (17, 13, 11),
    (31, 37, 41),
    (4, 4, 4),
    (12, 20, 8),
    (36, 44, 28),
    (68, 132, 20),
    (64, 64, 64),
    (100, 4, 200),
];

fn stored(rows: usize, cols: usize, transposed: bool) -> [usize; 2] {
    if transposed {
        [cols, rows]
    } else {
        [rows, cols]
    }
}

/// Runs `variant` (or the autotuned choice) on operands stored as `dtype` and compares with
/// the reference on the values stored; the bound is k·eps·Σ|a·b|, twice the worst case of f32
/// dot products (f16 operands' products are exact in f32, and their sums f32).
fn check(
    a_shape: &[usize],
    b_shape: &[usize],
    opts: MatmulOptions,
    variant: Option<MatmulVariant>,
    seed: u64,
    dtype: DType,
) {
    let gpu = gpu();
    let (na, nb) = (a_shape.iter().product(), b_shape.iter().product());
    let stored_as = |v: Vec<f32>| match dtype {
        DType::F32 => v,
        DType::F16 => v.into_iter().map(|x| f16::from_f32(x).to_f32()).collect(),
    };
    let (ha, hb) = (stored_as(random(na, seed)), stored_as(random(nb, seed + 1)));
    let a = Tensor::from_slice_as(&gpu, a_shape, &ha, dtype).unwrap();
    let b = Tensor::from_slice_as(&gpu, b_shape, &hb, dtype).unwrap();
    let dims = MatmulDims::infer(a_shape, b_shape, opts).unwrap();
    let out = match variant {
        Some(v) => a.matmul_with(&b, opts, v).unwrap(),
        None => a.matmul_t(&b, opts).unwrap(),
    };
    let (want, scale) = reference::matmul(&f64s(&ha), &f64s(&hb), &dims);
    let name = variant.map_or("autotuned".to_string(), |v| v.name());
    let what = format!("{name} {dtype:?} {a_shape:?}·{b_shape:?} {opts:?}");
    assert_eq!(out.numel(), dims.batch * dims.m * dims.n, "{what}: size");
    assert_eq!(
        &out.shape()[out.shape().len() - 2..],
        &[dims.m, dims.n],
        "{what}: shape"
    );
    assert_close(&what, &out.to_vec().unwrap(), &want, |i| {
        dims.k as f64 * EPS * scale[i] + 1e-30
    });
}

fn every_variant_every_transpose(dtype: DType) {
    for variant in MatmulVariant::available(&gpu())
        .into_iter()
        .map(Some)
        .chain([None])
    {
        for (s, &(m, n, k)) in SIZES.iter().enumerate() {
            for opts in TRANSPOSES {
                let a = stored(m, k, opts.trans_a);
                let b = stored(k, n, opts.trans_b);
                let dims = MatmulDims::infer(&a, &b, opts).unwrap();
                if variant.is_none_or(|v| v.supports(&dims)) {
                    check(&a, &b, opts, variant, s as u64, dtype);
                }
            }
        }
    }
}

#[test]
fn every_variant_every_transpose_awkward_sizes() {
    every_variant_every_transpose(DType::F32);
}

#[test]
fn f16_operands_every_variant_every_transpose_awkward_sizes() {
    let gpu = gpu();
    assert!(
        gpu.features().contains(wgpu::Features::SHADER_F16),
        "adapter `{}` lacks SHADER_F16, which the f16 operand kernels need",
        gpu.info().name
    );
    every_variant_every_transpose(DType::F16);
}

#[test]
fn operands_of_different_dtypes_are_refused() {
    let gpu = gpu();
    let a = Tensor::from_slice(&gpu, &[2, 2], &[1.0; 4]).unwrap();
    let b = Tensor::from_slice_as(&gpu, &[2, 2], &[1.0; 4], DType::F16).unwrap();
    let err = a.matmul(&b).unwrap_err();
    assert!(matches!(err, Error::DType { op: "matmul", .. }), "{err}");
}

#[test]
fn vec4_variants_apply_to_aligned_shapes_only() {
    let aligned = MatmulDims::infer(&[12, 8], &[8, 20], MatmulOptions::default()).unwrap();
    let odd_k = MatmulDims::infer(&[12, 7], &[7, 20], MatmulOptions::default()).unwrap();
    let odd_m_transposed = MatmulDims::infer(&[8, 13], &[8, 20], TRANSPOSES[1]).unwrap();
    for v in MatmulVariant::all() {
        let reg = matches!(
            v,
            MatmulVariant::Reg { .. } | MatmulVariant::Subgroup { .. }
        );
        assert!(v.supports(&aligned), "{}", v.name());
        assert_eq!(v.supports(&odd_k), !reg, "{}", v.name());
        assert_eq!(v.supports(&odd_m_transposed), !reg, "{}", v.name());
    }
    let gpu = gpu();
    let a = Tensor::from_slice(&gpu, &[12, 7], &[0.0; 84]).unwrap();
    let b = Tensor::from_slice(&gpu, &[7, 20], &[0.0; 140]).unwrap();
    let err = a
        .matmul_with(
            &b,
            MatmulOptions::default(),
            MatmulVariant::Reg { rows: 8, cols4: 2 },
        )
        .unwrap_err();
    assert!(err.to_string().contains("reg8x8 cannot compute"), "{err}");
}

/// One variant of each family the device has, and the autotuned choice.
fn one_of_each_family() -> Vec<Option<MatmulVariant>> {
    let mut picked: Vec<MatmulVariant> = Vec::new();
    for v in MatmulVariant::available(&gpu()) {
        if !picked.iter().any(|p| p.shader().name == v.shader().name) {
            picked.push(v);
        }
    }
    picked.into_iter().map(Some).chain([None]).collect()
}

#[test]
fn subgroup_variants_exist_where_the_subgroup_size_is_fixed() {
    let gpu = gpu();
    let info = gpu.info();
    let fixed = gpu.features().contains(wgpu::Features::SUBGROUP)
        && info.subgroup_min_size == info.subgroup_max_size;
    let subgroup = MatmulVariant::available(&gpu)
        .into_iter()
        .filter(|v| matches!(v, MatmulVariant::Subgroup { .. }))
        .count();
    assert_eq!(
        subgroup > 0,
        fixed,
        "subgroup sizes {}..{}",
        info.subgroup_min_size,
        info.subgroup_max_size
    );
    if !fixed {
        let a = Tensor::from_slice(&gpu, &[4, 4], &[0.0; 16]).unwrap();
        let variant = MatmulVariant::Subgroup { rows: 8, cols4: 2 };
        let err = a
            .matmul_with(&a, MatmulOptions::default(), variant)
            .unwrap_err();
        assert!(err.to_string().contains("subgroups"), "{err}");
    }
}

#[test]
fn batched_and_broadcast_operands() {
    for variant in one_of_each_family() {
        for opts in TRANSPOSES {
            let (m, n, k) = (8, 12, 16);
            let a = stored(m, k, opts.trans_a);
            let b = stored(k, n, opts.trans_b);
            for dtype in [DType::F32, DType::F16] {
                check(&[3, a[0], a[1]], &[3, b[0], b[1]], opts, variant, 1, dtype);
                check(&[a[0], a[1]], &[2, 3, b[0], b[1]], opts, variant, 2, dtype);
                check(&[5, a[0], a[1]], &[b[0], b[1]], opts, variant, 3, dtype);
            }
        }
    }
    let gpu = gpu();
    let out = Tensor::from_slice(&gpu, &[2, 3, 4, 5], &random(120, 9))
        .unwrap()
        .matmul(&Tensor::from_slice(&gpu, &[5, 6], &random(30, 10)).unwrap())
        .unwrap();
    assert_eq!(out.shape(), &[2, 3, 4, 6]);
}

#[test]
fn grids_wider_than_one_dimension_allows() {
    let gpu = gpu();
    let max = gpu.limits().max_compute_workgroups_per_dimension as usize;
    let plain = MatmulOptions::default();
    // Rows: one past the limit for each family's tile height (the smallest tile of each).
    check(
        &[16 * max + 1, 1],
        &[1, 1],
        plain,
        Some(MatmulVariant::Naive),
        20,
        DType::F32,
    );
    check(
        &[64 * max + 3, 1],
        &[1, 2],
        plain,
        Some(MatmulVariant::Tiled),
        21,
        DType::F32,
    );
    check(
        &[32 * max + 5, 4],
        &[4, 4],
        plain,
        Some(MatmulVariant::Reg { rows: 4, cols4: 1 }),
        22,
        DType::F32,
    );
    let info = gpu.info();
    let smallest_subgroup_tile = MatmulVariant::available(&gpu)
        .into_iter()
        .filter_map(|v| match v {
            MatmulVariant::Subgroup { rows, .. } => Some((64 / info.subgroup_min_size * rows, v)),
            _ => None,
        })
        .min_by_key(|(tile_rows, _)| *tile_rows);
    if let Some((tile_rows, variant)) = smallest_subgroup_tile {
        check(
            &[tile_rows as usize * max + 5, 4],
            &[4, 4],
            plain,
            Some(variant),
            25,
            DType::F32,
        );
    }
    // Columns, and batches.
    check(
        &[1, 1],
        &[1, 16 * max + 9],
        plain,
        Some(MatmulVariant::Naive),
        23,
        DType::F32,
    );
    for variant in one_of_each_family() {
        check(
            &[max + 2, 1, 4],
            &[max + 2, 4, 4],
            plain,
            variant,
            24,
            DType::F32,
        );
    }
}

#[test]
fn incompatible_shapes_are_clear_errors() {
    let gpu = gpu();
    let t = |shape: &[usize]| {
        Tensor::from_slice(&gpu, shape, &vec![0.0; shape.iter().product()]).unwrap()
    };
    let err = t(&[2, 3]).matmul(&t(&[4, 5])).unwrap_err();
    assert!(
        matches!(err, Error::ShapeMismatch { .. })
            && err.to_string().contains("3 columns but op(B) has 4 rows"),
        "{err}"
    );
    let err = t(&[2, 2, 3]).matmul(&t(&[3, 3, 5])).unwrap_err();
    assert!(err.to_string().contains("batch"), "{err}");
    let err = t(&[3]).matmul(&t(&[3, 1])).unwrap_err();
    assert!(err.to_string().contains("two dimensions"), "{err}");
}

#[test]
fn operands_beyond_the_binding_limit_are_refused_with_the_limit_named() {
    let gpu = gpu();
    let cols = gpu.limits().max_storage_buffer_binding_size as usize / 4 + 4;
    let a = Tensor::from_slice(&gpu, &[1, cols], &vec![0.0; cols]).unwrap();
    let b = Tensor::from_slice(&gpu, &[cols, 1], &vec![0.0; cols]).unwrap();
    let err = a
        .matmul_with(&b, MatmulOptions::default(), MatmulVariant::Naive)
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("max_storage_buffer_binding_size") && text.contains(&gpu.info().name),
        "{text}"
    );
}
