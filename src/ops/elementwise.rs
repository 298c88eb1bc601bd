//! Elementwise ops (`shaders/elementwise.wgsl`): add, mul, scale, relu, in-place forms, and
//! relu's gradient.

use crate::error::{Error, Result};
use crate::gpu::shader;
use crate::ops::for_each_chunk;
use crate::tensor::{DType, Tensor};
use crate::uniform;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    Add,
    Mul,
    /// `y` where `x > 0`, else 0: relu's gradient `g` passed through where its input `x` was
    /// positive.
    ReluGrad,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UnaryOp {
    Scale(f32),
    Relu,
}

uniform! {
    pub(crate) struct Params for [shader::ELEMENTWISE] {
        len: u32,
        scalar: f32,
    }
}

impl BinaryOp {
    fn code(self) -> f64 {
        match self {
            BinaryOp::Add => 0.0,
            BinaryOp::Mul => 1.0,
            BinaryOp::ReluGrad => 2.0,
        }
    }
}

impl UnaryOp {
    fn code(self) -> f64 {
        match self {
            UnaryOp::Scale(_) => 0.0,
            UnaryOp::Relu => 1.0,
        }
    }

    fn scalar(self) -> f32 {
        match self {
            UnaryOp::Scale(s) => s,
            UnaryOp::Relu => 0.0,
        }
    }
}

fn require_same_shape(op: &'static str, x: &Tensor, y: &Tensor) -> Result<()> {
    x.expect_dtype(op, DType::F32)?;
    y.expect_dtype(op, DType::F32)?;
    if x.shape() != y.shape() {
        return Err(Error::ShapeMismatch {
            op,
            lhs: x.shape().to_vec(),
            rhs: y.shape().to_vec(),
            why: "elementwise ops need equal shapes".into(),
        });
    }
    Ok(())
}

/// Dispatches `entry` over `out` a binding-sized chunk at a time; `inputs` are bound over
/// the same element range.
fn launch(
    entry: &str,
    constants: &[(&str, f64)],
    scalar: f32,
    inputs: &[(&str, &Tensor)],
    out: &Tensor,
) -> Result<()> {
    let gpu = out.gpu();
    let kernel = gpu.kernel(&shader::ELEMENTWISE, entry, constants)?;
    for_each_chunk(gpu, out.numel(), 4, |first, len| {
        let (offset, size) = (first * 4, len * 4);
        let mut buffers: Vec<_> = inputs
            .iter()
            .map(|(b, t)| (*b, t.binding_range(offset, size)))
            .collect();
        buffers.push(("out", out.binding_range(offset, size)));
        let params = Params {
            len: len as u32,
            scalar,
        };
        let groups = gpu.grid_1d(len.div_ceil(256), &kernel.label)?;
        Ok(gpu.dispatch(&kernel, &params, &buffers, groups)?)
    })
}

impl Tensor {
    pub fn binary(&self, other: &Tensor, op: BinaryOp) -> Result<Tensor> {
        require_same_shape("binary op", self, other)?;
        let out = Tensor::uninit(self.gpu(), self.shape(), DType::F32)?;
        launch(
            "binary",
            &[("BINARY", op.code())],
            0.0,
            &[("x", self), ("y", other)],
            &out,
        )?;
        Ok(out)
    }

    /// `self = self OP other`, in place.
    pub fn binary_(&self, other: &Tensor, op: BinaryOp) -> Result<()> {
        require_same_shape("binary op", self, other)?;
        // One buffer cannot be bound for reading and writing in the same dispatch.
        let other = if self.same_storage(other) {
            other.deep_clone()?
        } else {
            other.clone()
        };
        launch(
            "binary_inplace",
            &[("BINARY", op.code())],
            0.0,
            &[("y", &other)],
            self,
        )
    }

    pub fn unary(&self, op: UnaryOp) -> Result<Tensor> {
        self.expect_dtype("unary op", DType::F32)?;
        let out = Tensor::uninit(self.gpu(), self.shape(), DType::F32)?;
        launch(
            "unary",
            &[("UNARY", op.code())],
            op.scalar(),
            &[("x", self)],
            &out,
        )?;
        Ok(out)
    }

    /// `self = OP(self)`, in place.
    pub fn unary_(&self, op: UnaryOp) -> Result<()> {
        self.expect_dtype("unary op", DType::F32)?;
        launch(
            "unary_inplace",
            &[("UNARY", op.code())],
            op.scalar(),
            &[],
            self,
        )
    }

    pub fn add(&self, other: &Tensor) -> Result<Tensor> {
        self.binary(other, BinaryOp::Add)
    }

    pub fn mul(&self, other: &Tensor) -> Result<Tensor> {
        self.binary(other, BinaryOp::Mul)
    }

    pub fn add_(&self, other: &Tensor) -> Result<()> {
        self.binary_(other, BinaryOp::Add)
    }

    pub fn mul_(&self, other: &Tensor) -> Result<()> {
        self.binary_(other, BinaryOp::Mul)
    }

    pub fn scale(&self, s: f32) -> Result<Tensor> {
        self.unary(UnaryOp::Scale(s))
    }

    pub fn scale_(&self, s: f32) -> Result<()> {
        self.unary_(UnaryOp::Scale(s))
    }

    pub fn relu(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Relu)
    }

    pub fn relu_(&self) -> Result<()> {
        self.unary_(UnaryOp::Relu)
    }

    /// Relu's backward on the output gradient `self`: the gradient where `x` (relu's input,
    /// or its output) is positive, else 0.
    pub fn relu_backward(&self, x: &Tensor) -> Result<Tensor> {
        x.binary(self, BinaryOp::ReluGrad)
    }
}

/// CPU references in f64.
pub mod reference {
    use super::{BinaryOp, UnaryOp};

    pub fn binary(x: &[f64], y: &[f64], op: BinaryOp) -> Vec<f64> {
        x.iter()
            .zip(y)
            .map(|(&u, &v)| match op {
                BinaryOp::Add => u + v,
                BinaryOp::Mul => u * v,
                BinaryOp::ReluGrad => {
                    if u > 0.0 {
                        v
                    } else {
                        0.0
                    }
                }
            })
            .collect()
    }

    pub fn unary(x: &[f64], op: UnaryOp) -> Vec<f64> {
        x.iter()
            .map(|&u| match op {
                UnaryOp::Scale(s) => u * s as f64,
                UnaryOp::Relu => u.max(0.0),
            })
            .collect()
    }
}
