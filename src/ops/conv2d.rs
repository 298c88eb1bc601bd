//! 2-D convolution, NCHW, groups = 1 (`shaders/conv2d.wgsl`), forward and both gradients.
//! Each comes in two variants, which the autotuner picks between per adapter and shape:
//! direct loops (one invocation per output element), and GEMM, which lays the input out as
//! columns (`im2col`, skipped for a pointwise 1 x 1 convolution) and multiplies them with
//! lim's autotuned matmul; the input gradient goes back through `col2im`.
//!
//! Mixed precision: the GEMM routes take their operands (columns, weights, output gradients)
//! in f16 where asked (`operands = DType::F16`), as PyTorch's autocast runs convolutions:
//! im2col and the other kernels that lay operands out write them in f16; products and sums
//! stay f32, and so do the results. The direct route is f32 only.

use crate::error::{Error, Result};
use crate::gpu::{Gpu, Kernel, shader};
use crate::ops::matmul::MatmulOptions;
use crate::ops::{favoured_first, size_bucket};
use crate::tensor::{DType, Tensor};
use crate::uniform;

/// Stride, zero padding and dilation, each `[height, width]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dSpec {
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub dilation: [usize; 2],
}

impl Default for Conv2dSpec {
    fn default() -> Self {
        Conv2dSpec {
            stride: [1, 1],
            padding: [0, 0],
            dilation: [1, 1],
        }
    }
}

impl Conv2dSpec {
    /// The same stride and padding along both axes, no dilation.
    pub fn new(stride: usize, padding: usize) -> Conv2dSpec {
        Conv2dSpec {
            stride: [stride; 2],
            padding: [padding; 2],
            dilation: [1, 1],
        }
    }
}

/// The sizes of one convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dDims {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub o: usize,
    pub kh: usize,
    pub kw: usize,
    pub oh: usize,
    pub ow: usize,
    pub spec: Conv2dSpec,
}

impl Conv2dDims {
    /// The dims of `x [N, C, H, W]` convolved with `w [O, C, KH, KW]`.
    pub fn infer(x: &[usize], w: &[usize], spec: Conv2dSpec) -> Result<Conv2dDims> {
        let mismatch = |why: String| Error::ShapeMismatch {
            op: "conv2d",
            lhs: x.to_vec(),
            rhs: w.to_vec(),
            why,
        };
        let ([n, c, h, wd], [o, wc, kh, kw]) = (x, w) else {
            return Err(mismatch(
                "takes x [N, C, H, W] and weight [O, C, KH, KW]".into(),
            ));
        };
        if c != wc {
            return Err(mismatch(format!("x has {c} channels, the weight {wc}")));
        }
        if spec.stride.contains(&0) || spec.dilation.contains(&0) {
            return Err(mismatch(format!(
                "stride and dilation must be positive: {spec:?}"
            )));
        }
        let out = |size: usize, k: usize, axis: usize| -> Result<usize> {
            let span = spec.dilation[axis] * (k - 1) + 1;
            let padded = size + 2 * spec.padding[axis];
            if k == 0 || padded < span {
                return Err(mismatch(format!(
                    "a kernel spanning {span} does not fit in {padded} (padded) pixels"
                )));
            }
            Ok((padded - span) / spec.stride[axis] + 1)
        };
        Ok(Conv2dDims {
            n: *n,
            c: *c,
            h: *h,
            w: *wd,
            o: *o,
            kh: *kh,
            kw: *kw,
            oh: out(*h, *kh, 0)?,
            ow: out(*wd, *kw, 1)?,
            spec,
        })
    }

    pub fn out_shape(&self) -> [usize; 4] {
        [self.n, self.o, self.oh, self.ow]
    }

    /// 2 · N · O · OH · OW · C · KH · KW.
    pub fn flops(&self) -> f64 {
        2.0 * (self.n * self.o * self.oh * self.ow * self.c * self.kh * self.kw) as f64
    }

    /// A 1 x 1 convolution that reads every pixel once: a plain matmul, without im2col.
    pub fn pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.spec == Conv2dSpec::default()
    }

    fn taps(&self) -> usize {
        self.c * self.kh * self.kw
    }

    /// The GEMM route's K for the forward: the taps rounded up to a multiple of 4, so that
    /// the vec4 matmul kernels apply (a 7 x 7 stem over 3 channels has 147), except where a
    /// pointwise convolution multiplies x itself.
    fn gemm_taps(&self) -> usize {
        match self.pointwise() {
            true => self.c,
            false => self.taps().next_multiple_of(4),
        }
    }

    fn plane(&self) -> usize {
        self.oh * self.ow
    }

    fn tune_key(&self, pass: &str) -> String {
        format!(
            "conv2d/{pass}/n{}/c{}/o{}/hw{}x{}/k{}x{}/s{}x{}",
            size_bucket(self.n),
            size_bucket(self.c),
            size_bucket(self.o),
            size_bucket(self.oh),
            size_bucket(self.ow),
            self.kh,
            self.kw,
            self.spec.stride[0],
            self.spec.stride[1],
        )
    }

    fn params(&self) -> Params {
        let s = self.spec;
        Params {
            n: self.n as u32,
            c: self.c as u32,
            h: self.h as u32,
            w: self.w as u32,
            o: self.o as u32,
            kh: self.kh as u32,
            kw: self.kw as u32,
            oh: self.oh as u32,
            ow: self.ow as u32,
            stride_h: s.stride[0] as u32,
            stride_w: s.stride[1] as u32,
            pad_h: s.padding[0] as u32,
            pad_w: s.padding[1] as u32,
            dil_h: s.dilation[0] as u32,
            dil_w: s.dilation[1] as u32,
            total: 0,
            taps: self.gemm_taps() as u32,
            tap_major: 0,
            cols_in: 0,
            cols_out: 0,
        }
    }

    /// The params of the entries that read or write columns `[taps, N, OH OW]`.
    fn tap_major_params(&self) -> Params {
        Params {
            tap_major: 1,
            ..self.params()
        }
    }
}

/// One convolution of a network, for benchmarks.
#[derive(Clone, Copy, Debug)]
pub struct LayerShape {
    pub name: &'static str,
    pub x: [usize; 4],
    pub w: [usize; 4],
    pub spec: Conv2dSpec,
}

const fn layer(
    name: &'static str,
    x: [usize; 4],
    w: [usize; 4],
    stride: usize,
    padding: usize,
) -> LayerShape {
    LayerShape {
        name,
        x,
        w,
        spec: Conv2dSpec {
            stride: [stride; 2],
            padding: [padding; 2],
            dilation: [1, 1],
        },
    }
}

/// ResNet-18's distinct convolutions at batch 16 and 64 x 64 input, where the peer
/// benchmarks (burn, PyTorch) measure.
pub const RESNET18_B16_64PX: [LayerShape; 6] = [
    layer("conv1 7x7/2", [16, 3, 64, 64], [64, 3, 7, 7], 2, 3),
    layer("layer1 3x3", [16, 64, 16, 16], [64, 64, 3, 3], 1, 1),
    layer("layer2 3x3/2", [16, 64, 16, 16], [128, 64, 3, 3], 2, 1),
    layer("layer2 down 1x1/2", [16, 64, 16, 16], [128, 64, 1, 1], 2, 0),
    layer("layer3 3x3", [16, 256, 4, 4], [256, 256, 3, 3], 1, 1),
    layer("layer4 3x3", [16, 512, 2, 2], [512, 512, 3, 3], 1, 1),
];

/// A convolution kernel variant: the autotuner's candidates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvVariant {
    /// One invocation per output element, looping over what it sums: no column buffer, for
    /// small layers where im2col's extra pass and memory cost more than they save.
    Direct,
    /// im2col (unless pointwise), then lim's matmul, one product per image; col2im for the
    /// input gradient.
    Gemm,
    /// The same with every image in one product: columns `[taps, N OH OW]`, so that the
    /// matmul's N is the batch's pixels (layer4 of a ResNet at 64 px has 4 per image), at
    /// the price of permuting the output or its gradient between `[N, O, ..]` and `[O, N, ..]`.
    GemmBatch,
}

impl ConvVariant {
    pub const ALL: [ConvVariant; 3] = [
        ConvVariant::Gemm,
        ConvVariant::GemmBatch,
        ConvVariant::Direct,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ConvVariant::Direct => "direct",
            ConvVariant::Gemm => "gemm",
            ConvVariant::GemmBatch => "gemm_batch",
        }
    }
}

/// The three passes of a convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvPass {
    Forward,
    BackwardInput,
    BackwardWeight,
}

uniform! {
    pub(crate) struct Params for [shader::CONV2D] {
        n: u32,
        c: u32,
        h: u32,
        w: u32,
        o: u32,
        kh: u32,
        kw: u32,
        oh: u32,
        ow: u32,
        stride_h: u32,
        stride_w: u32,
        pad_h: u32,
        pad_w: u32,
        dil_h: u32,
        dil_w: u32,
        total: u32,
        taps: u32,
        tap_major: u32,
        cols_in: u32,
        cols_out: u32,
    }
}

/// Refuses f16 operands on the direct route, which computes in f32 only.
fn require_route(variant: ConvVariant, operands: DType) -> Result<()> {
    if variant == ConvVariant::Direct && operands != DType::F32 {
        return Err(Error::InvalidArgument {
            op: "conv2d",
            why: format!("the direct variant takes f32 operands only, not {operands:?}"),
        });
    }
    Ok(())
}

/// A GEMM operand in the precision asked for.
fn operand(t: Tensor, dtype: DType) -> Result<Tensor> {
    match t.dtype() == dtype {
        true => Ok(t),
        false => t.cast(dtype),
    }
}

/// The conv2d.wgsl kernel `entry` writing `out` elements of `dtype`.
fn conv_kernel(gpu: &Gpu, entry: &str, out: DType) -> Result<std::sync::Arc<Kernel>> {
    Ok(gpu.operand_kernel(&shader::CONV2D, &[], out == DType::F16, entry, &[])?)
}

/// Runs entry `entry` of conv2d.wgsl with one invocation per element of a new tensor of
/// `shape` and `dtype`.
fn launch(
    entry: &str,
    params: Params,
    a: &Tensor,
    b: Option<&Tensor>,
    (shape, dtype): (&[usize], DType),
) -> Result<Tensor> {
    let gpu = a.gpu();
    let out = Tensor::uninit(gpu, shape, dtype)?;
    let kernel = conv_kernel(gpu, entry, dtype)?;
    let mut bindings = vec![("a", a.binding("conv2d input")?)];
    if let Some(b) = b {
        bindings.push(("b", b.binding("conv2d input")?));
    }
    bindings.push(("out", out.binding("conv2d output")?));
    let params = Params {
        total: out.numel() as u32,
        ..params
    };
    let groups = gpu.grid_1d(out.numel().div_ceil(256) as u64, &kernel.label)?;
    gpu.dispatch(&kernel, &params, &bindings, groups)?;
    Ok(out)
}

/// How `im2col` and `col2im` lay out their invocations (see shaders/conv2d.wgsl); the
/// autotuner picks one per shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnLayout {
    /// One invocation per element, in 8 x 8 tiles of the plane: what a GPU wants.
    Tiles,
    /// One invocation per row, looping along it: what software adapters want.
    Rows,
}

impl ColumnLayout {
    pub const ALL: [ColumnLayout; 2] = [ColumnLayout::Tiles, ColumnLayout::Rows];

    pub fn name(self) -> &'static str {
        match self {
            ColumnLayout::Tiles => "tiles",
            ColumnLayout::Rows => "rows",
        }
    }
}

/// Records `stem` (`im2col` or `col2im`) over a `width` x `height` plane, `lines` taps or
/// channels and the batch's images into a new tensor of `shape` and `dtype`, in `layout`, or
/// where that is `None` in the layout the autotuner picks for the shape.
fn launch_planes(
    stem: &str,
    params: Params,
    a: &Tensor,
    (width, height, lines): (usize, usize, usize),
    (shape, dtype): (&[usize], DType),
    layout: Option<ColumnLayout>,
) -> Result<Tensor> {
    let gpu = a.gpu();
    let images = params.n;
    let run = |layout: ColumnLayout| -> Result<Tensor> {
        let out = Tensor::uninit(gpu, shape, dtype)?;
        let kernel = conv_kernel(gpu, &format!("{stem}_{}", layout.name()), dtype)?;
        let grid = match layout {
            ColumnLayout::Tiles => [
                (width.div_ceil(8) * height.div_ceil(8)) as u32,
                lines as u32,
                images,
            ],
            ColumnLayout::Rows => [(lines * height).div_ceil(64) as u32, 1, images],
        };
        gpu.dispatch(
            &kernel,
            &params,
            &[
                ("a", a.binding("conv2d input")?),
                ("out", out.binding("conv2d output")?),
            ],
            grid,
        )?;
        Ok(out)
    };
    if let Some(layout) = layout {
        return run(layout);
    }
    let key = format!(
        "conv2d/{stem}{}{}/n{}/lines{}/hw{}x{}/{}",
        params.tap_major,
        if dtype == DType::F16 { "/f16" } else { "" },
        size_bucket(images as usize),
        size_bucket(lines),
        size_bucket(height),
        size_bucket(width),
        [
            params.kh,
            params.kw,
            params.stride_h,
            params.stride_w,
            params.pad_h,
            params.pad_w,
            params.dil_h,
            params.dil_w,
        ]
        .map(|v| v.to_string())
        .join("x"),
    );
    let layouts = favoured_first(gpu, ColumnLayout::Tiles, ColumnLayout::Rows);
    let choice = gpu.autotune(&key, &layouts, ColumnLayout::name, |l| run(l).map(drop))?;
    run(choice)
}

/// `x` as columns `[N, taps, OH OW]` (see `gemm_taps`) in `dtype`: itself where the
/// convolution is pointwise.
fn columns(x: &Tensor, d: &Conv2dDims, dtype: DType) -> Result<Tensor> {
    if d.pointwise() {
        return operand(x.reshape(&[d.n, d.c, d.h * d.w])?, dtype);
    }
    let plane = (d.ow, d.oh, d.gemm_taps());
    let shape = [d.n, d.gemm_taps(), d.plane()];
    launch_planes("im2col", d.params(), x, plane, (&shape, dtype), None)
}

/// `x` as columns `[taps, N OH OW]` in `dtype`: every image's in one K, for the weight
/// gradient.
fn columns_tap_major(x: &Tensor, d: &Conv2dDims, dtype: DType) -> Result<Tensor> {
    let plane = (d.ow, d.oh, d.gemm_taps());
    let shape = [d.gemm_taps(), d.n * d.plane()];
    launch_planes(
        "im2col",
        d.tap_major_params(),
        x,
        plane,
        (&shape, dtype),
        None,
    )
}

/// The input gradient `[N, C, H, W]` from column gradients laid out as `params` say.
fn uncolumns(dcols: &Tensor, params: Params, d: &Conv2dDims, x_shape: &[usize]) -> Result<Tensor> {
    let plane = (d.w, d.h, d.c);
    launch_planes("col2im", params, dcols, plane, (x_shape, DType::F32), None)
}

/// The weight as the GEMM route's A, `[O, taps]` in `dtype`, padded with zero columns to
/// `gemm_taps`.
fn gemm_weight(weight: &Tensor, d: &Conv2dDims, dtype: DType) -> Result<Tensor> {
    let w = weight.reshape(&[d.o, d.taps()])?;
    copy_columns(&w, d, (d.taps(), d.gemm_taps()), dtype)
}

/// The output gradient `[N, O, OH OW]` as `[O, N OH OW]` in `dtype`.
fn batch_to_channels(g: &Tensor, d: &Conv2dDims, dtype: DType) -> Result<Tensor> {
    let shape = [d.o, d.n * d.plane()];
    launch("swap_batch_channels", d.params(), g, None, (&shape, dtype))
}

/// A `[rows, cols_in]` matrix as `[rows, cols_out]` in `dtype`, cut or padded with zeros.
fn copy_columns(
    m: &Tensor,
    d: &Conv2dDims,
    (cols_in, cols_out): (usize, usize),
    dtype: DType,
) -> Result<Tensor> {
    if cols_in == cols_out {
        return operand(m.clone(), dtype);
    }
    let params = Params {
        cols_in: cols_in as u32,
        cols_out: cols_out as u32,
        ..d.params()
    };
    let rows = m.numel() / cols_in;
    launch("copy_columns", params, m, None, (&[rows, cols_out], dtype))
}

const NT: MatmulOptions = MatmulOptions {
    trans_a: false,
    trans_b: true,
};
const TN: MatmulOptions = MatmulOptions {
    trans_a: true,
    trans_b: false,
};

impl Tensor {
    /// The convolution of `self [N, C, H, W]` with `weight [O, C, KH, KW]`, without bias,
    /// with the variant the autotuner picks.
    pub fn conv2d(&self, weight: &Tensor, spec: Conv2dSpec) -> Result<Tensor> {
        self.conv2d_in(weight, spec, DType::F32)
    }

    /// [`Tensor::conv2d`] with the GEMM's operands in `operands`.
    pub fn conv2d_in(&self, weight: &Tensor, spec: Conv2dSpec, operands: DType) -> Result<Tensor> {
        let d = Conv2dDims::infer(self.shape(), weight.shape(), spec)?;
        let variant = tuned(&d, ConvPass::Forward, self, operands, |v| {
            self.conv2d_with(weight, spec, v, operands)
        })?;
        self.conv2d_with(weight, spec, variant, operands)
    }

    pub fn conv2d_with(
        &self,
        weight: &Tensor,
        spec: Conv2dSpec,
        variant: ConvVariant,
        operands: DType,
    ) -> Result<Tensor> {
        self.expect_dtype("conv2d", DType::F32)?;
        weight.expect_dtype("conv2d", DType::F32)?;
        require_route(variant, operands)?;
        let d = Conv2dDims::infer(self.shape(), weight.shape(), spec)?;
        let parts = by_batch_chunks(&d, variant, self, |start, len| {
            batch_part(self, start, len)?.conv2d_whole(weight, spec, variant, operands)
        })?;
        join_batch(parts)
    }

    /// The GEMM route's columns of `self` `[N, C, H, W]` for a weight of `w_shape`:
    /// `[N, taps, OH OW]`, or `[taps, N OH OW]` with `tap_major`, where taps is C KH KW
    /// rounded up to a multiple of 4 (the extra rows 0), laid out by `layout`.
    pub fn im2col_with(
        &self,
        w_shape: &[usize],
        spec: Conv2dSpec,
        tap_major: bool,
        layout: ColumnLayout,
    ) -> Result<Tensor> {
        self.expect_dtype("conv2d", DType::F32)?;
        let d = Conv2dDims::infer(self.shape(), w_shape, spec)?;
        let (params, shape) = match tap_major {
            false => (d.params(), vec![d.n, d.gemm_taps(), d.plane()]),
            true => (d.tap_major_params(), vec![d.gemm_taps(), d.n * d.plane()]),
        };
        let plane = (d.ow, d.oh, d.gemm_taps());
        launch_planes(
            "im2col",
            params,
            self,
            plane,
            (&shape, DType::F32),
            Some(layout),
        )
    }

    /// The input gradient `[N, C, H, W]` from the gradient `self` of [`Tensor::im2col_with`]'s
    /// columns, laid out by `layout`.
    pub fn col2im_with(
        &self,
        x_shape: &[usize],
        w_shape: &[usize],
        spec: Conv2dSpec,
        tap_major: bool,
        layout: ColumnLayout,
    ) -> Result<Tensor> {
        self.expect_dtype("conv2d", DType::F32)?;
        let d = Conv2dDims::infer(x_shape, w_shape, spec)?;
        let (params, numel) = match tap_major {
            false => (d.params(), d.n * d.gemm_taps() * d.plane()),
            true => (d.tap_major_params(), d.gemm_taps() * d.n * d.plane()),
        };
        if self.numel() != numel {
            return Err(Error::ShapeMismatch {
                op: "col2im",
                lhs: self.shape().to_vec(),
                rhs: x_shape.to_vec(),
                why: format!("the columns of this input hold {numel} elements"),
            });
        }
        launch_planes(
            "col2im",
            params,
            self,
            (d.w, d.h, d.c),
            (x_shape, DType::F32),
            Some(layout),
        )
    }

    fn conv2d_whole(
        &self,
        weight: &Tensor,
        spec: Conv2dSpec,
        variant: ConvVariant,
        operands: DType,
    ) -> Result<Tensor> {
        let d = Conv2dDims::infer(self.shape(), weight.shape(), spec)?;
        match variant {
            ConvVariant::Direct => launch(
                "forward",
                d.params(),
                self,
                Some(weight),
                (&d.out_shape(), DType::F32),
            ),
            ConvVariant::Gemm => {
                let w = gemm_weight(weight, &d, operands)?;
                let cols = columns(self, &d, operands)?;
                w.matmul(&cols)?.reshape(&d.out_shape())
            }
            ConvVariant::GemmBatch => {
                let w = gemm_weight(weight, &d, operands)?;
                let y = w.matmul(&columns_tap_major(self, &d, operands)?)?;
                launch(
                    "swap_batch_channels",
                    d.tap_major_params(),
                    &y,
                    None,
                    (&d.out_shape(), DType::F32),
                )
            }
        }
    }

    /// The gradient with respect to the input of `x.conv2d(weight)`, from the output's
    /// gradient `self`, for an input of shape `x_shape`.
    pub fn conv2d_backward_input(
        &self,
        weight: &Tensor,
        x_shape: &[usize],
        spec: Conv2dSpec,
    ) -> Result<Tensor> {
        self.conv2d_backward_input_in(weight, x_shape, spec, DType::F32)
    }

    /// [`Tensor::conv2d_backward_input`] with the GEMM's operands in `operands`.
    pub fn conv2d_backward_input_in(
        &self,
        weight: &Tensor,
        x_shape: &[usize],
        spec: Conv2dSpec,
        operands: DType,
    ) -> Result<Tensor> {
        let d = self.backward_dims(x_shape, weight.shape(), spec)?;
        let variant = tuned(&d, ConvPass::BackwardInput, self, operands, |v| {
            self.conv2d_backward_input_with(weight, x_shape, spec, v, operands)
        })?;
        self.conv2d_backward_input_with(weight, x_shape, spec, variant, operands)
    }

    pub fn conv2d_backward_input_with(
        &self,
        weight: &Tensor,
        x_shape: &[usize],
        spec: Conv2dSpec,
        variant: ConvVariant,
        operands: DType,
    ) -> Result<Tensor> {
        require_route(variant, operands)?;
        let d = self.backward_dims(x_shape, weight.shape(), spec)?;
        let parts = by_batch_chunks(&d, variant, self, |start, len| {
            let mut part_shape = x_shape.to_vec();
            part_shape[0] = len;
            batch_part(self, start, len)?.conv2d_backward_input_whole(
                weight,
                &part_shape,
                spec,
                variant,
                operands,
            )
        })?;
        join_batch(parts)
    }

    fn conv2d_backward_input_whole(
        &self,
        weight: &Tensor,
        x_shape: &[usize],
        spec: Conv2dSpec,
        variant: ConvVariant,
        operands: DType,
    ) -> Result<Tensor> {
        let d = self.backward_dims(x_shape, weight.shape(), spec)?;
        match variant {
            ConvVariant::Direct => launch(
                "backward_input",
                d.params(),
                self,
                Some(weight),
                (x_shape, DType::F32),
            ),
            ConvVariant::Gemm => {
                let w = gemm_weight(weight, &d, operands)?;
                let g = operand(self.reshape(&[d.n, d.o, d.plane()])?, operands)?;
                let dcols = w.matmul_t(&g, TN)?;
                if d.pointwise() {
                    return dcols.reshape(x_shape);
                }
                uncolumns(&dcols, d.params(), &d, x_shape)
            }
            ConvVariant::GemmBatch => {
                let w = gemm_weight(weight, &d, operands)?;
                let g = batch_to_channels(self, &d, operands)?;
                let dcols = w.matmul_t(&g, TN)?;
                uncolumns(&dcols, d.tap_major_params(), &d, x_shape)
            }
        }
    }

    /// The gradient with respect to the weight of `x.conv2d(weight)`, from the output's
    /// gradient `self`, for a weight of shape `w_shape`.
    pub fn conv2d_backward_weight(
        &self,
        x: &Tensor,
        w_shape: &[usize],
        spec: Conv2dSpec,
    ) -> Result<Tensor> {
        self.conv2d_backward_weight_in(x, w_shape, spec, DType::F32)
    }

    /// [`Tensor::conv2d_backward_weight`] with the GEMM's operands in `operands`.
    pub fn conv2d_backward_weight_in(
        &self,
        x: &Tensor,
        w_shape: &[usize],
        spec: Conv2dSpec,
        operands: DType,
    ) -> Result<Tensor> {
        let d = self.backward_dims(x.shape(), w_shape, spec)?;
        let variant = tuned(&d, ConvPass::BackwardWeight, self, operands, |v| {
            self.conv2d_backward_weight_with(x, w_shape, spec, v, operands)
        })?;
        self.conv2d_backward_weight_with(x, w_shape, spec, variant, operands)
    }

    pub fn conv2d_backward_weight_with(
        &self,
        x: &Tensor,
        w_shape: &[usize],
        spec: Conv2dSpec,
        variant: ConvVariant,
        operands: DType,
    ) -> Result<Tensor> {
        require_route(variant, operands)?;
        let d = self.backward_dims(x.shape(), w_shape, spec)?;
        let parts = by_batch_chunks(&d, variant, self, |start, len| {
            batch_part(self, start, len)?.conv2d_backward_weight_whole(
                &batch_part(x, start, len)?,
                w_shape,
                spec,
                variant,
                operands,
            )
        })?;
        // The weight gradient sums over the images, so over the chunks.
        let total = parts[0].clone();
        for part in &parts[1..] {
            total.add_(part)?;
        }
        Ok(total)
    }

    fn conv2d_backward_weight_whole(
        &self,
        x: &Tensor,
        w_shape: &[usize],
        spec: Conv2dSpec,
        variant: ConvVariant,
        operands: DType,
    ) -> Result<Tensor> {
        let d = self.backward_dims(x.shape(), w_shape, spec)?;
        match variant {
            ConvVariant::Direct => launch(
                "backward_weight",
                d.params(),
                x,
                Some(self),
                (w_shape, DType::F32),
            ),
            // Both GEMM variants sum over images and pixels in one product:
            // [O, N OH OW] x [taps, N OH OW]^T.
            ConvVariant::Gemm | ConvVariant::GemmBatch => {
                let g = batch_to_channels(self, &d, operands)?;
                let dw = g.matmul_t(&columns_tap_major(x, &d, operands)?, NT)?;
                copy_columns(&dw, &d, (d.gemm_taps(), d.taps()), DType::F32)?.reshape(w_shape)
            }
        }
    }

    /// The dims of the convolution whose output gradient `self` is, checked against them.
    fn backward_dims(&self, x: &[usize], w: &[usize], spec: Conv2dSpec) -> Result<Conv2dDims> {
        self.expect_dtype("conv2d", DType::F32)?;
        let d = Conv2dDims::infer(x, w, spec)?;
        if self.shape() != d.out_shape() {
            return Err(Error::ShapeMismatch {
                op: "conv2d backward",
                lhs: self.shape().to_vec(),
                rhs: d.out_shape().to_vec(),
                why: "the gradient has the output's shape".into(),
            });
        }
        Ok(d)
    }
}

/// Runs `run(start, len)` over consecutive chunks of the batch and returns their results:
/// one chunk, the whole batch, unless a tensor the pass binds would exceed the adapter's
/// storage binding limit (a ResNet-50 at batch 128 and 224 px does).
fn by_batch_chunks(
    d: &Conv2dDims,
    variant: ConvVariant,
    on: &Tensor,
    mut run: impl FnMut(usize, usize) -> Result<Tensor>,
) -> Result<Vec<Tensor>> {
    let gpu = on.gpu();
    let limit = gpu.limits().max_storage_buffer_binding_size as usize / 4;
    let mut per_image = (d.c * d.h * d.w).max(d.o * d.plane());
    if variant != ConvVariant::Direct {
        per_image = per_image.max(d.gemm_taps() * d.plane());
    }
    let images = limit / per_image;
    if images >= d.n {
        return Ok(vec![run(0, d.n)?]);
    }
    if images == 0 {
        return Err(Error::InvalidArgument {
            op: "conv2d",
            why: format!(
                "one image of {d:?} needs {per_image} floats in one binding, more than \
                 adapter `{}` binds ({limit})",
                gpu.info().name
            ),
        });
    }
    let mut parts = Vec::new();
    for start in (0..d.n).step_by(images) {
        parts.push(run(start, images.min(d.n - start))?);
    }
    Ok(parts)
}

/// Entries `start .. start + len` of `t`'s batch: `t` itself when that is all of it.
fn batch_part(t: &Tensor, start: usize, len: usize) -> Result<Tensor> {
    match start == 0 && len == t.shape()[0] {
        true => Ok(t.clone()),
        false => t.slice_batch(start, len),
    }
}

/// The chunks' results one after another along the batch.
fn join_batch(mut parts: Vec<Tensor>) -> Result<Tensor> {
    match parts.len() {
        1 => Ok(parts.remove(0)),
        _ => Tensor::concat_batch(&parts.iter().collect::<Vec<_>>()),
    }
}

/// The autotuner's variant for one pass; GEMM first, the default when tuning is off.
fn tuned(
    d: &Conv2dDims,
    pass: ConvPass,
    on: &Tensor,
    operands: DType,
    run: impl Fn(ConvVariant) -> Result<Tensor>,
) -> Result<ConvVariant> {
    let variants: Vec<ConvVariant> = ConvVariant::ALL
        .into_iter()
        .filter(|&v| require_route(v, operands).is_ok())
        .collect();
    let key = match operands {
        DType::F32 => d.tune_key(&format!("{pass:?}")),
        DType::F16 => d.tune_key(&format!("{pass:?}/f16")),
    };
    on.gpu()
        .autotune(&key, &variants, ConvVariant::name, |v| run(v).map(drop))
}

/// CPU references in f64.
pub mod reference {
    use super::Conv2dDims;

    /// Calls `f(x index, column index)` for every column entry im2col copies from x.
    fn for_each_column_entry(d: &Conv2dDims, tap_major: bool, mut f: impl FnMut(usize, usize)) {
        let (taps, plane) = (d.gemm_taps(), d.oh * d.ow);
        for n in 0..d.n {
            for t in 0..d.c * d.kh * d.kw {
                let (c, i, j) = (t / (d.kh * d.kw), t / d.kw % d.kh, t % d.kw);
                let first = match tap_major {
                    false => (n * taps + t) * plane,
                    true => (t * d.n + n) * plane,
                };
                for p in 0..d.oh {
                    for q in 0..d.ow {
                        if let (Some(y), Some(z)) =
                            (source(p, i, 0, d.h, d), source(q, j, 1, d.w, d))
                        {
                            f(((n * d.c + c) * d.h + y) * d.w + z, first + p * d.ow + q);
                        }
                    }
                }
            }
        }
    }

    /// The GEMM route's columns, as [`crate::Tensor::im2col_with`] builds them.
    pub fn im2col(x: &[f64], d: &Conv2dDims, tap_major: bool) -> Vec<f64> {
        let mut cols = vec![0.0; d.n * d.gemm_taps() * d.oh * d.ow];
        for_each_column_entry(d, tap_major, |at_x, at_col| cols[at_col] = x[at_x]);
        cols
    }

    /// The input gradient from column gradients, as [`crate::Tensor::col2im_with`]: each
    /// column entry added back to the input element it was copied from.
    pub fn col2im(cols: &[f64], d: &Conv2dDims, tap_major: bool) -> Vec<f64> {
        let mut dx = vec![0.0; d.n * d.c * d.h * d.w];
        for_each_column_entry(d, tap_major, |at_x, at_col| dx[at_x] += cols[at_col]);
        dx
    }

    fn source(
        out_pos: usize,
        tap: usize,
        axis: usize,
        size: usize,
        d: &Conv2dDims,
    ) -> Option<usize> {
        let s = d.spec;
        (out_pos * s.stride[axis] + tap * s.dilation[axis])
            .checked_sub(s.padding[axis])
            .filter(|&v| v < size)
    }

    /// Calls `f(x index, w index, out index)` for every product the convolution sums.
    fn for_each_product(d: &Conv2dDims, mut f: impl FnMut(usize, usize, usize)) {
        for n in 0..d.n {
            for o in 0..d.o {
                for p in 0..d.oh {
                    for q in 0..d.ow {
                        let out = ((n * d.o + o) * d.oh + p) * d.ow + q;
                        for c in 0..d.c {
                            for i in 0..d.kh {
                                let Some(y) = source(p, i, 0, d.h, d) else {
                                    continue;
                                };
                                for j in 0..d.kw {
                                    let Some(z) = source(q, j, 1, d.w, d) else {
                                        continue;
                                    };
                                    let xi = ((n * d.c + c) * d.h + y) * d.w + z;
                                    let wi = ((o * d.c + c) * d.kh + i) * d.kw + j;
                                    f(xi, wi, out);
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    pub fn forward(x: &[f64], w: &[f64], d: &Conv2dDims) -> Vec<f64> {
        let mut out = vec![0.0; d.n * d.o * d.oh * d.ow];
        for_each_product(d, |xi, wi, oi| out[oi] += x[xi] * w[wi]);
        out
    }

    pub fn backward_input(g: &[f64], w: &[f64], d: &Conv2dDims) -> Vec<f64> {
        let mut dx = vec![0.0; d.n * d.c * d.h * d.w];
        for_each_product(d, |xi, wi, oi| dx[xi] += g[oi] * w[wi]);
        dx
    }

    pub fn backward_weight(g: &[f64], x: &[f64], d: &Conv2dDims) -> Vec<f64> {
        let mut dw = vec![0.0; d.o * d.c * d.kh * d.kw];
        for_each_product(d, |xi, wi, oi| dw[wi] += g[oi] * x[xi]);
        dw
    }
}
