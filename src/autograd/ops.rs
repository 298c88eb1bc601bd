//! The differentiable ops on [`Var`]: each computes its value with the tensor op and records
//! the backward rule, built from tensor ops too.

use crate::error::{Error, Result};
use crate::ops::conv2d::Conv2dSpec;
use crate::ops::matmul::MatmulOptions;
use crate::ops::pool::PoolSpec;
use crate::ops::reduce::ReduceOp;
use crate::ops::rows::RowOp;
use crate::tensor::Tensor;

use super::{Op, Var};

fn same_shape(op: &'static str, a: &Var, b: &Var) -> Result<()> {
    if a.shape() != b.shape() {
        return Err(Error::ShapeMismatch {
            op,
            lhs: a.shape().to_vec(),
            rhs: b.shape().to_vec(),
            why: "needs equal shapes".into(),
        });
    }
    Ok(())
}

/// `grad()` where the input needs a gradient, else nothing computed.
fn grad_if(need: bool, grad: impl FnOnce() -> Result<Tensor>) -> Result<Option<Tensor>> {
    need.then(grad).transpose()
}

fn matrix(op: &'static str, v: &Var) -> Result<()> {
    if v.shape().len() != 2 {
        return Err(Error::InvalidArgument {
            op,
            why: format!("takes matrices, got shape {:?}", v.shape()),
        });
    }
    Ok(())
}

impl Var {
    pub fn add(&self, other: &Var) -> Result<Var> {
        same_shape("add", self, other)?;
        let value = self.value().add(other.value())?;
        Ok(Var::from_op(
            Op::Add,
            value,
            &[self, other],
            Box::new(|g, needs| Ok(needs.iter().map(|&n| n.then(|| g.clone())).collect())),
        ))
    }

    pub fn mul(&self, other: &Var) -> Result<Var> {
        same_shape("mul", self, other)?;
        let value = self.value().mul(other.value())?;
        let (a, b) = (self.value().clone(), other.value().clone());
        Ok(Var::from_op(
            Op::Mul,
            value,
            &[self, other],
            Box::new(move |g, needs| {
                Ok(vec![
                    grad_if(needs[0], || g.mul(&b))?,
                    grad_if(needs[1], || g.mul(&a))?,
                ])
            }),
        ))
    }

    pub fn scale(&self, s: f32) -> Result<Var> {
        let value = self.value().scale(s)?;
        Ok(Var::from_op(
            Op::Scale,
            value,
            &[self],
            Box::new(move |g, _| Ok(vec![Some(g.scale(s)?)])),
        ))
    }

    pub fn relu(&self) -> Result<Var> {
        let value = self.value().relu()?;
        let x = self.value().clone();
        Ok(Var::from_op(
            Op::Relu,
            value,
            &[self],
            Box::new(move |g, _| Ok(vec![Some(g.relu_backward(&x)?)])),
        ))
    }

    /// `self · other` of two matrices.
    pub fn matmul(&self, other: &Var) -> Result<Var> {
        self.matmul_t(other, MatmulOptions::default())
    }

    /// `op(self) · op(other)` of two matrices, with the transposes of `opts`.
    pub fn matmul_t(&self, other: &Var, opts: MatmulOptions) -> Result<Var> {
        matrix("matmul", self)?;
        matrix("matmul", other)?;
        let value = self.value().matmul_t(other.value(), opts)?;
        let (a, b) = (self.value().clone(), other.value().clone());
        let t = |trans_a, trans_b| MatmulOptions { trans_a, trans_b };
        Ok(Var::from_op(
            Op::Matmul,
            value,
            &[self, other],
            Box::new(move |g, needs| {
                // C = A B: dA = G Bᵀ, dB = Aᵀ G; with A or B stored transposed, so are theirs.
                let da = grad_if(needs[0], || match opts.trans_a {
                    false => g.matmul_t(&b, t(false, !opts.trans_b)),
                    true => b.matmul_t(g, t(opts.trans_b, true)),
                })?;
                let db = grad_if(needs[1], || match opts.trans_b {
                    false => a.matmul_t(g, t(!opts.trans_a, false)),
                    true => g.matmul_t(&a, t(true, opts.trans_a)),
                })?;
                Ok(vec![da, db])
            }),
        ))
    }

    /// `self + bias` with `bias` (of the last axis's length) added to every row.
    pub fn add_bias(&self, bias: &Var) -> Result<Var> {
        let n = *self.shape().last().unwrap_or(&0);
        if bias.shape() != [n] {
            return Err(Error::ShapeMismatch {
                op: "add_bias",
                lhs: self.shape().to_vec(),
                rhs: bias.shape().to_vec(),
                why: "the bias has one value per column".into(),
            });
        }
        let rows = self.value().numel() / n.max(1);
        let expanded = bias.value().expand_axis(0, rows)?.reshape(self.shape())?;
        let value = self.value().add(&expanded)?;
        Ok(Var::from_op(
            Op::AddBias,
            value,
            &[self, bias],
            Box::new(move |g, needs| {
                let per_row = grad_if(needs[1], || g.reshape(&[rows, n])?.sum(0))?;
                Ok(vec![needs[0].then(|| g.clone()), per_row])
            }),
        ))
    }

    /// The 2-D convolution of `self [N, C, H, W]` with `weight [O, C, KH, KW]`, plus a
    /// per-channel `bias [O]` if given (`torch.nn.functional.conv2d`, groups = 1).
    /// Under [`super::autocast`] its products (and its gradients') take f16 operands.
    pub fn conv2d(&self, weight: &Var, bias: Option<&Var>, spec: Conv2dSpec) -> Result<Var> {
        let operands = super::autocast_dtype();
        let value = self.value().conv2d_in(weight.value(), spec, operands)?;
        let (x, w) = (self.value().clone(), weight.value().clone());
        let y = Var::from_op(
            Op::Conv2d,
            value,
            &[self, weight],
            Box::new(move |g, needs| {
                let dx = grad_if(needs[0], || {
                    g.conv2d_backward_input_in(&w, x.shape(), spec, operands)
                })?;
                let dw = grad_if(needs[1], || {
                    g.conv2d_backward_weight_in(&x, w.shape(), spec, operands)
                })?;
                Ok(vec![dx, dw])
            }),
        );
        match bias {
            Some(b) => y.add_channel_bias(b),
            None => Ok(y),
        }
    }

    /// `self [N, C, ...] + bias [C]`, the bias added to every element of its channel.
    pub fn add_channel_bias(&self, bias: &Var) -> Result<Var> {
        let shape = self.shape().to_vec();
        if shape.len() < 2 || bias.shape() != [shape[1]] {
            return Err(Error::ShapeMismatch {
                op: "add_channel_bias",
                lhs: shape,
                rhs: bias.shape().to_vec(),
                why: "the bias has one value per channel (axis 1)".into(),
            });
        }
        let (n, c) = (shape[0], shape[1]);
        let plane = self.value().numel() / (n * c).max(1);
        let expanded = bias
            .value()
            .expand_axis(1, plane)?
            .expand_axis(0, n)?
            .reshape(&shape)?;
        let value = self.value().add(&expanded)?;
        Ok(Var::from_op(
            Op::AddChannelBias,
            value,
            &[self, bias],
            Box::new(move |g, needs| {
                let per_channel = grad_if(needs[1], || g.reshape(&[n, c, plane])?.sum(2)?.sum(0))?;
                Ok(vec![needs[0].then(|| g.clone()), per_channel])
            }),
        ))
    }

    /// Batch normalisation of `[N, C]` or `[N, C, H, W]` with per-channel `gamma` and `beta`:
    /// in training with the batch's statistics, moving `running_mean` / `running_var` in
    /// place; in evaluation with them. `relu` fuses a ReLU onto the output.
    pub fn batch_norm(
        &self,
        gamma: &Var,
        beta: &Var,
        running_mean: &Tensor,
        running_var: &Tensor,
        training: bool,
        relu: bool,
    ) -> Result<Var> {
        let x = self.value().clone();
        let (y, stats) = if training {
            x.batch_norm_train(gamma.value(), beta.value(), running_mean, running_var, relu)?
        } else {
            let y =
                x.batch_norm_eval(gamma.value(), beta.value(), running_mean, running_var, relu)?;
            let stats = crate::ops::batchnorm::BatchStats {
                mean: running_mean.deep_clone()?,
                var: running_var.deep_clone()?,
                training: false,
            };
            (y, stats)
        };
        let (out, g_of) = (y.clone(), gamma.value().clone());
        Ok(Var::from_op(
            Op::BatchNorm,
            y,
            &[self, gamma, beta],
            Box::new(move |g, needs| {
                let g = if relu {
                    g.relu_backward(&out)?
                } else {
                    g.clone()
                };
                let (dx, dgamma, dbeta) = match needs[0] {
                    true => {
                        let (dx, dgamma, dbeta) = g.batch_norm_backward(&x, &g_of, &stats)?;
                        (Some(dx), dgamma, dbeta)
                    }
                    false => {
                        let (dgamma, dbeta) = g.batch_norm_param_grads(&x, &g_of, &stats)?;
                        (None, dgamma, dbeta)
                    }
                };
                Ok(vec![
                    dx,
                    needs[1].then_some(dgamma),
                    needs[2].then_some(dbeta),
                ])
            }),
        ))
    }

    /// Max pooling over square windows (`torch.nn.MaxPool2d`).
    pub fn max_pool2d(&self, spec: PoolSpec) -> Result<Var> {
        let (y, argmax) = self.value().max_pool2d(spec)?;
        Ok(Var::from_op(
            Op::MaxPool2d,
            y,
            &[self],
            Box::new(move |g, _| Ok(vec![Some(g.max_pool2d_backward(&argmax)?)])),
        ))
    }

    /// The mean over the pixels of `[N, C, H, W]`: `[N, C]`, as
    /// `torch.flatten(nn.AdaptiveAvgPool2d(1)(x), 1)`.
    pub fn global_avg_pool(&self) -> Result<Var> {
        let [n, c, h, w] = self.shape() else {
            return Err(Error::InvalidArgument {
                op: "global_avg_pool",
                why: format!("takes [N, C, H, W], got {:?}", self.shape()),
            });
        };
        self.reshape(&[*n, *c, h * w])?.mean(2)
    }

    /// Entries `start .. start + len` along the batch axis.
    pub fn slice_batch(&self, start: usize, len: usize) -> Result<Var> {
        let value = self.value().slice_batch(start, len)?;
        let shape = self.shape().to_vec();
        Ok(Var::from_op(
            Op::SliceBatch,
            value,
            &[self],
            Box::new(move |g, _| {
                // The gradient of the entries taken, zeros around them.
                let zeros = |count: usize| -> Result<Option<Tensor>> {
                    let mut s = shape.clone();
                    s[0] = count;
                    (count > 0)
                        .then(|| Tensor::zeros(g.gpu(), &s, g.dtype()))
                        .transpose()
                };
                let (before, after) = (zeros(start)?, zeros(shape[0] - start - len)?);
                let parts: Vec<&Tensor> = before.iter().chain([g]).chain(after.iter()).collect();
                Ok(vec![Some(Tensor::concat_batch(&parts)?)])
            }),
        ))
    }

    /// The vars one after another along the batch axis (SwAV's multi-crop batches).
    pub fn concat_batch(parts: &[&Var]) -> Result<Var> {
        let values: Vec<&Tensor> = parts.iter().map(|v| v.value()).collect();
        let value = Tensor::concat_batch(&values)?;
        let sizes: Vec<usize> = parts.iter().map(|v| v.shape()[0]).collect();
        Ok(Var::from_op(
            Op::ConcatBatch,
            value,
            parts,
            Box::new(move |g, needs| {
                let mut start = 0;
                let mut grads = Vec::new();
                for (&len, &need) in sizes.iter().zip(needs) {
                    grads.push(grad_if(need, || g.slice_batch(start, len))?);
                    start += len;
                }
                Ok(grads)
            }),
        ))
    }

    /// `x · weightᵀ + bias`, as `torch.nn.functional.linear` (weight `[out, in]`).
    pub fn linear(&self, weight: &Var, bias: Option<&Var>) -> Result<Var> {
        let y = self.matmul_t(
            weight,
            MatmulOptions {
                trans_a: false,
                trans_b: true,
            },
        )?;
        match bias {
            Some(b) => y.add_bias(b),
            None => Ok(y),
        }
    }

    /// The sum or mean along `axis` (their gradient spreads over it, the mean's scaled).
    fn reduce(&self, axis: usize, mean: bool) -> Result<Var> {
        let (op, node) = match mean {
            true => (ReduceOp::Mean, Op::Mean),
            false => (ReduceOp::Sum, Op::Sum),
        };
        let value = self.value().reduce(axis, op)?;
        let len = self.shape()[axis];
        Ok(Var::from_op(
            node,
            value,
            &[self],
            Box::new(move |g, _| {
                let spread = g.expand_axis(axis, len)?;
                Ok(vec![Some(match mean {
                    true => spread.scale(1.0 / len as f32)?,
                    false => spread,
                })])
            }),
        ))
    }

    /// The sum along `axis`, which goes away.
    pub fn sum(&self, axis: usize) -> Result<Var> {
        self.reduce(axis, false)
    }

    /// The mean along `axis`, which goes away.
    pub fn mean(&self, axis: usize) -> Result<Var> {
        self.reduce(axis, true)
    }

    /// The sum of every element, as a one-element tensor.
    pub fn sum_all(&self) -> Result<Var> {
        self.reshape(&[self.value().numel()])?.sum(0)
    }

    /// The mean of every element, as a one-element tensor.
    pub fn mean_all(&self) -> Result<Var> {
        self.reshape(&[self.value().numel()])?.mean(0)
    }

    /// The same elements under another shape (`flatten` is this too).
    pub fn reshape(&self, shape: &[usize]) -> Result<Var> {
        let value = self.value().reshape(shape)?;
        let before = self.shape().to_vec();
        Ok(Var::from_op(
            Op::Reshape,
            value,
            &[self],
            Box::new(move |g, _| Ok(vec![Some(g.reshape(&before)?)])),
        ))
    }

    fn rows(&self, op: RowOp) -> Result<Var> {
        let value = self.value().rows(op)?;
        // Softmax's gradients need its output; normalisation's its input.
        let saved = match op {
            RowOp::L2Normalize => self.value().clone(),
            RowOp::Softmax | RowOp::LogSoftmax => value.clone(),
        };
        let node = match op {
            RowOp::Softmax => Op::Softmax,
            RowOp::LogSoftmax => Op::LogSoftmax,
            RowOp::L2Normalize => Op::L2Normalize,
        };
        Ok(Var::from_op(
            node,
            value,
            &[self],
            Box::new(move |g, _| Ok(vec![Some(g.rows_backward(&saved, op)?)])),
        ))
    }

    /// Softmax along the last axis.
    pub fn softmax(&self) -> Result<Var> {
        self.rows(RowOp::Softmax)
    }

    /// Log-softmax along the last axis.
    pub fn log_softmax(&self) -> Result<Var> {
        self.rows(RowOp::LogSoftmax)
    }

    /// Each row along the last axis divided by its L2 norm (at least 1e-12).
    pub fn l2_normalize(&self) -> Result<Var> {
        self.rows(RowOp::L2Normalize)
    }

    /// Cross-entropy of `[rows, classes]` logits against target probabilities of the same
    /// shape, averaged over the rows: `-mean_i sum_j targets[i, j] log_softmax(self)[i, j]`
    /// (`torch.nn.functional.cross_entropy` with probabilities, as SwAV's swapped
    /// prediction uses it).
    pub fn cross_entropy(&self, targets: &Var) -> Result<Var> {
        matrix("cross_entropy", self)?;
        let picked = self.log_softmax()?.mul(targets)?;
        picked.sum(1)?.mean(0)?.scale(-1.0)
    }

    /// Cross-entropy against one class index per row.
    pub fn cross_entropy_classes(&self, classes: &[usize]) -> Result<Var> {
        matrix("cross_entropy", self)?;
        let (rows, n) = (self.shape()[0], self.shape()[1]);
        if classes.len() != rows || classes.iter().any(|&c| c >= n) {
            return Err(Error::InvalidArgument {
                op: "cross_entropy",
                why: format!("needs {rows} class indices below {n}, got {classes:?}"),
            });
        }
        let mut one_hot = vec![0.0; rows * n];
        for (i, &c) in classes.iter().enumerate() {
            one_hot[i * n + c] = 1.0;
        }
        let targets = Tensor::from_slice(self.value().gpu(), &[rows, n], &one_hot)?;
        self.cross_entropy(&Var::constant(targets))
    }
}
