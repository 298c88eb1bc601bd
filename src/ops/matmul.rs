//! Matrix multiplication with optional transposes and a batch dimension:
//! `shaders/matmul_naive.wgsl`, `matmul_tiled.wgsl`, `matmul_reg.wgsl` and
//! `matmul_subgroup.wgsl`, one of which the autotuner picks per adapter and shape class.
//! Operands are both f32, or both f16 (mixed precision: each kernel converts what it reads to
//! f32, so the products are exact and the sums f32); the product is f32.

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::gpu::shader::{self, Shader};
use crate::ops::size_bucket;
use crate::tensor::{DType, Tensor};
use crate::uniform;

/// Transposes of the operands, as in `C = op(A) · op(B)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MatmulOptions {
    /// A is stored `[.., K, M]` and used transposed.
    pub trans_a: bool,
    /// B is stored `[.., N, K]` and used transposed.
    pub trans_b: bool,
}

/// A matmul kernel variant: the autotuner's candidates, one per kind of adapter that wants it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatmulVariant {
    /// One output per invocation; any shape: for products too small or too thin for tiles.
    Naive,
    /// 64 x 64 tiles through shared memory, 4 x 4 outputs per invocation; any shape: for GPUs
    /// whose shared memory is fast, where it saves most global loads.
    Tiled,
    /// `rows` x `4 * cols4` outputs per invocation in registers, vec4 loads, no shared memory:
    /// for adapters where barriers and shared memory cost more than registers (lavapipe).
    Reg { rows: u32, cols4: u32 },
    /// As `Reg`, with the lanes of a subgroup sharing the loads of A through shuffles; needs
    /// subgroups of a fixed size: for GPUs whose shuffles beat a second load.
    Subgroup { rows: u32, cols4: u32 },
}

/// The register-blocked shapes worth trying.
const REG_SHAPES: [(u32, u32); 8] = [
    (8, 2),
    (4, 1),
    (8, 1),
    (16, 1),
    (16, 2),
    (32, 1),
    (4, 4),
    (8, 4),
];
const SUBGROUP_SHAPES: [(u32, u32); 8] = [
    (32, 2),
    (32, 4),
    (64, 1),
    (8, 2),
    (16, 1),
    (16, 2),
    (32, 1),
    (16, 4),
];

/// The adapter's subgroup size where it is fixed and the subgroup kernel can use it.
fn fixed_subgroup_size(gpu: &Gpu) -> Option<u32> {
    let info = gpu.info();
    let size = info.subgroup_min_size;
    let usable = gpu.features().contains(wgpu::Features::SUBGROUP)
        && size == info.subgroup_max_size
        && (4..=64).contains(&size)
        && size.is_power_of_two();
    usable.then_some(size)
}

/// The sizes of one matmul.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatmulDims {
    pub batch: usize,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    /// Elements between consecutive batch entries of A and B; 0 broadcasts one matrix.
    pub stride_a: usize,
    pub stride_b: usize,
    pub opts: MatmulOptions,
}

impl MatmulVariant {
    /// Every variant: the subgroup ones, the register-blocked ones, tiled, naive.
    pub fn all() -> Vec<MatmulVariant> {
        let subgroup = SUBGROUP_SHAPES
            .iter()
            .map(|&(rows, cols4)| Self::Subgroup { rows, cols4 });
        let reg = REG_SHAPES
            .iter()
            .map(|&(rows, cols4)| Self::Reg { rows, cols4 });
        subgroup
            .chain(reg)
            .chain([Self::Tiled, Self::Naive])
            .collect()
    }

    /// The variants this device can run, its default (used when tuning is off) first.
    pub fn available(gpu: &Gpu) -> Vec<MatmulVariant> {
        Self::all().into_iter().filter(|v| v.runs_on(gpu)).collect()
    }

    fn runs_on(self, gpu: &Gpu) -> bool {
        match self {
            Self::Subgroup { .. } => {
                fixed_subgroup_size(gpu).is_some_and(|sg| self.fits_subgroup(sg))
            }
            _ => true,
        }
    }

    pub fn name(self) -> String {
        match self {
            Self::Naive => "naive".into(),
            Self::Tiled => "tiled".into(),
            Self::Reg { rows, cols4 } => format!("reg{rows}x{}", 4 * cols4),
            Self::Subgroup { rows, cols4 } => format!("sub{rows}x{}", 4 * cols4),
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::all().into_iter().find(|v| v.name() == name)
    }

    /// Whether the variant can compute these dims.
    pub fn supports(self, d: &MatmulDims) -> bool {
        match self {
            Self::Naive | Self::Tiled => true,
            Self::Reg { .. } | Self::Subgroup { .. } => {
                d.k.is_multiple_of(4)
                    && d.n.is_multiple_of(4)
                    && (!d.opts.trans_a || d.m.is_multiple_of(4))
            }
        }
    }

    /// The `const`s of the variant's shader to rewrite, for subgroups of `sg` lanes.
    pub fn specialisation(self, sg: u32) -> Vec<(&'static str, u32)> {
        match self {
            Self::Reg { rows, cols4 } => vec![("ROWS", rows), ("COLS4", cols4)],
            Self::Subgroup { rows, cols4 } => vec![("ROWS", rows), ("COLS4", cols4), ("SG", sg)],
            Self::Naive | Self::Tiled => vec![],
        }
    }

    /// Whether the subgroup variant can share loads among `sg` lanes.
    pub fn fits_subgroup(self, sg: u32) -> bool {
        match self {
            Self::Subgroup { rows, .. } => rows % sg == 0 || sg.is_multiple_of(rows),
            _ => true,
        }
    }

    /// Output columns and rows one workgroup covers, for subgroups of `sg` lanes.
    fn tile(self, sg: u32) -> (usize, usize) {
        match self {
            Self::Naive => (16, 16),
            Self::Tiled => (64, 64),
            Self::Reg { rows, cols4 } => (8 * 4 * cols4 as usize, 8 * rows as usize),
            Self::Subgroup { rows, cols4 } => {
                ((sg * 4 * cols4) as usize, (64 / sg * rows) as usize)
            }
        }
    }

    /// The kernel family's shader.
    pub fn shader(self) -> &'static Shader {
        match self {
            Self::Naive => &shader::MATMUL_NAIVE,
            Self::Tiled => &shader::MATMUL_TILED,
            Self::Reg { .. } => &shader::MATMUL_REG,
            Self::Subgroup { .. } => &shader::MATMUL_SUBGROUP,
        }
    }
}

impl MatmulDims {
    /// The dims of `a · b` under `opts`, from shapes `[.., rows, cols]` whose leading
    /// dimensions are the batch: equal on both sides, or absent on one (broadcast).
    pub fn infer(a: &[usize], b: &[usize], opts: MatmulOptions) -> Result<MatmulDims> {
        let mismatch = |why: &str| Error::ShapeMismatch {
            op: "matmul",
            lhs: a.to_vec(),
            rhs: b.to_vec(),
            why: why.to_string(),
        };
        if a.len() < 2 || b.len() < 2 {
            return Err(mismatch("both operands need at least two dimensions"));
        }
        let (a_lead, a_mat) = a.split_at(a.len() - 2);
        let (b_lead, b_mat) = b.split_at(b.len() - 2);
        let (m, ka) = if opts.trans_a {
            (a_mat[1], a_mat[0])
        } else {
            (a_mat[0], a_mat[1])
        };
        let (kb, n) = if opts.trans_b {
            (b_mat[1], b_mat[0])
        } else {
            (b_mat[0], b_mat[1])
        };
        if ka != kb {
            return Err(mismatch(&format!(
                "op(A) has {ka} columns but op(B) has {kb} rows"
            )));
        }
        let batch_a: usize = a_lead.iter().product();
        let batch_b: usize = b_lead.iter().product();
        let batch = match (a_lead.is_empty(), b_lead.is_empty()) {
            (false, false) if a_lead != b_lead => {
                return Err(mismatch("batch dimensions differ"));
            }
            (true, _) => batch_b,
            _ => batch_a,
        };
        Ok(MatmulDims {
            batch,
            m,
            n,
            k: ka,
            stride_a: if a_lead.is_empty() { 0 } else { m * ka },
            stride_b: if b_lead.is_empty() { 0 } else { ka * n },
            opts,
        })
    }

    /// 2 · M · N · K · batch.
    pub fn flops(&self) -> f64 {
        2.0 * (self.batch * self.m * self.n * self.k) as f64
    }

    /// The autotuner's key: transposes, power-of-two size buckets and the alignments that
    /// decide which variants apply.
    pub fn tune_key(&self) -> String {
        format!(
            "matmul/{}{}/b{}/m{}/n{}/k{}/a{}{}{}",
            if self.opts.trans_a { "T" } else { "N" },
            if self.opts.trans_b { "T" } else { "N" },
            size_bucket(self.batch),
            size_bucket(self.m),
            size_bucket(self.n),
            size_bucket(self.k),
            self.m.is_multiple_of(4) as u8,
            self.n.is_multiple_of(4) as u8,
            self.k.is_multiple_of(4) as u8,
        )
    }
}

uniform! {
    pub(crate) struct Params for [
        shader::MATMUL_NAIVE,
        shader::MATMUL_TILED,
        shader::MATMUL_REG,
        shader::MATMUL_SUBGROUP,
    ] {
        m: u32,
        n: u32,
        k: u32,
        stride_a: u32,
        stride_b: u32,
        stride_c: u32,
        group0_x: u32,
        group0_y: u32,
        group0_z: u32,
    }
}

impl Tensor {
    /// `self · other`.
    pub fn matmul(&self, other: &Tensor) -> Result<Tensor> {
        self.matmul_t(other, MatmulOptions::default())
    }

    /// `op(self) · op(other)` with the variant the autotuner picks.
    pub fn matmul_t(&self, other: &Tensor, opts: MatmulOptions) -> Result<Tensor> {
        let dims = MatmulDims::infer(self.shape(), other.shape(), opts)?;
        let variant = choose_variant(self, other, &dims)?;
        self.matmul_with(other, opts, variant)
    }

    /// `op(self) · op(other)` with a given variant; f32 whether the operands are f32 or f16.
    pub fn matmul_with(
        &self,
        other: &Tensor,
        opts: MatmulOptions,
        variant: MatmulVariant,
    ) -> Result<Tensor> {
        other.expect_dtype("matmul", self.dtype())?;
        let dims = MatmulDims::infer(self.shape(), other.shape(), opts)?;
        if !variant.runs_on(self.gpu()) {
            return Err(Error::InvalidArgument {
                op: "matmul",
                why: format!(
                    "variant {} needs subgroups of one fixed size, which adapter `{}` does not have",
                    variant.name(),
                    self.gpu().info().name
                ),
            });
        }
        if !variant.supports(&dims) {
            return Err(Error::InvalidArgument {
                op: "matmul",
                why: format!("variant {} cannot compute {dims:?}", variant.name()),
            });
        }
        let lead = if self.shape().len() >= other.shape().len() {
            self.shape()
        } else {
            other.shape()
        };
        let mut shape = lead[..lead.len() - 2].to_vec();
        shape.extend([dims.m, dims.n]);
        let out = Tensor::uninit(self.gpu(), &shape, DType::F32)?;
        record(self, other, &out, &dims, variant)?;
        Ok(out)
    }
}

/// The autotuned variant for these operands.
fn choose_variant(a: &Tensor, b: &Tensor, dims: &MatmulDims) -> Result<MatmulVariant> {
    let candidates: Vec<MatmulVariant> = MatmulVariant::available(a.gpu())
        .into_iter()
        .filter(|v| v.supports(dims))
        .collect();
    let gpu = a.gpu();
    let key = match a.dtype() {
        DType::F32 => dims.tune_key(),
        DType::F16 => format!("{}/f16", dims.tune_key()),
    };
    gpu.autotune(&key, &candidates, MatmulVariant::name, |variant| {
        let scratch = Tensor::uninit(gpu, &[dims.batch, dims.m, dims.n], DType::F32)?;
        record(a, b, &scratch, dims, variant)
    })
}

/// Records the dispatches of one matmul into `out`, splitting grids wider than the adapter
/// allows per dimension.
fn record(
    a: &Tensor,
    b: &Tensor,
    out: &Tensor,
    d: &MatmulDims,
    variant: MatmulVariant,
) -> Result<()> {
    let gpu = a.gpu();
    let sg = fixed_subgroup_size(gpu).unwrap_or(1);
    let transposes = [
        ("TRANS_A", d.opts.trans_a as u8 as f64),
        ("TRANS_B", d.opts.trans_b as u8 as f64),
    ];
    let consts = variant.specialisation(sg);
    let f16 = a.dtype() == DType::F16;
    let kernel = gpu.operand_kernel(variant.shader(), &consts, f16, "main", &transposes)?;
    let bindings = [
        ("a", a.binding("matmul A")?),
        ("b", b.binding("matmul B")?),
        ("c", out.binding("matmul C")?),
    ];
    let (tile_cols, tile_rows) = variant.tile(sg);
    let grid = [d.n.div_ceil(tile_cols), d.m.div_ceil(tile_rows), d.batch];
    let max = gpu.limits().max_compute_workgroups_per_dimension as usize;
    for z0 in (0..grid[2]).step_by(max) {
        for y0 in (0..grid[1]).step_by(max) {
            for x0 in (0..grid[0]).step_by(max) {
                let params = Params {
                    m: d.m as u32,
                    n: d.n as u32,
                    k: d.k as u32,
                    stride_a: d.stride_a as u32,
                    stride_b: d.stride_b as u32,
                    stride_c: (d.m * d.n) as u32,
                    group0_x: x0 as u32,
                    group0_y: y0 as u32,
                    group0_z: z0 as u32,
                };
                let groups = [
                    (grid[0] - x0).min(max) as u32,
                    (grid[1] - y0).min(max) as u32,
                    (grid[2] - z0).min(max) as u32,
                ];
                gpu.dispatch(&kernel, &params, &bindings, groups)?;
            }
        }
    }
    Ok(())
}

/// CPU reference in f64.
pub mod reference {
    use super::MatmulDims;

    /// `op(A) · op(B)` for every batch entry, and beside it `|op(A)| · |op(B)|`, the scale
    /// of the rounding error an f32 result may carry.
    pub fn matmul(a: &[f64], b: &[f64], d: &MatmulDims) -> (Vec<f64>, Vec<f64>) {
        let mut out = vec![0.0; d.batch * d.m * d.n];
        let mut scale = vec![0.0; d.batch * d.m * d.n];
        for batch in 0..d.batch {
            let a0 = batch * d.stride_a;
            let b0 = batch * d.stride_b;
            for i in 0..d.m {
                for j in 0..d.n {
                    let (mut s, mut s_abs) = (0.0, 0.0);
                    for kk in 0..d.k {
                        let x = if d.opts.trans_a {
                            a[a0 + kk * d.m + i]
                        } else {
                            a[a0 + i * d.k + kk]
                        };
                        let y = if d.opts.trans_b {
                            b[b0 + j * d.k + kk]
                        } else {
                            b[b0 + kk * d.n + j]
                        };
                        s += x * y;
                        s_abs += (x * y).abs();
                    }
                    out[(batch * d.m + i) * d.n + j] = s;
                    scale[(batch * d.m + i) * d.n + j] = s_abs;
                }
            }
        }
        (out, scale)
    }
}
