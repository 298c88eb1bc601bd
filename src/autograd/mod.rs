//! Reverse-mode automatic differentiation over GPU tensors.
//!
//! Every op on [`Var`]s computes its value on the GPU and, while gradients are being
//! recorded, keeps a node with its inputs and a backward rule: a plain function of the
//! tensors the op saved and the gradient of its output. [`Var::backward`] orders the nodes
//! reachable from a scalar so that each comes after everything computed from it, walks them
//! in reverse, and accumulates into each leaf's `grad` (as PyTorch does: gradients add up
//! across calls until [`Var::zero_grad`]). Nothing is read back from the GPU on the way.

mod ops;

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::LocalKey;

use crate::error::{Error, Result};
use crate::tensor::{DType, Tensor};

/// The differentiable ops: the closed set of backward rules the engine knows. Every node
/// records its op, so an error from a backward pass names the op that made it, and the op
/// table in the tests has a row for each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    Add,
    Mul,
    Scale,
    Relu,
    Matmul,
    AddBias,
    Conv2d,
    AddChannelBias,
    BatchNorm,
    MaxPool2d,
    SliceBatch,
    ConcatBatch,
    Sum,
    Mean,
    Reshape,
    Softmax,
    LogSoftmax,
    L2Normalize,
}

impl Op {
    pub const ALL: [Op; 18] = [
        Op::Add,
        Op::Mul,
        Op::Scale,
        Op::Relu,
        Op::Matmul,
        Op::AddBias,
        Op::Conv2d,
        Op::AddChannelBias,
        Op::BatchNorm,
        Op::MaxPool2d,
        Op::SliceBatch,
        Op::ConcatBatch,
        Op::Sum,
        Op::Mean,
        Op::Reshape,
        Op::Softmax,
        Op::LogSoftmax,
        Op::L2Normalize,
    ];

    /// The `Var` method's name.
    pub fn name(self) -> &'static str {
        match self {
            Op::Add => "add",
            Op::Mul => "mul",
            Op::Scale => "scale",
            Op::Relu => "relu",
            Op::Matmul => "matmul",
            Op::AddBias => "add_bias",
            Op::Conv2d => "conv2d",
            Op::AddChannelBias => "add_channel_bias",
            Op::BatchNorm => "batch_norm",
            Op::MaxPool2d => "max_pool2d",
            Op::SliceBatch => "slice_batch",
            Op::ConcatBatch => "concat_batch",
            Op::Sum => "sum",
            Op::Mean => "mean",
            Op::Reshape => "reshape",
            Op::Softmax => "softmax",
            Op::LogSoftmax => "log_softmax",
            Op::L2Normalize => "l2_normalize",
        }
    }
}

/// Maps the gradient of an op's output to the gradients of its inputs, in input order:
/// `needs[i]` says whether input i needs one, and the rule computes only those (`None` for
/// the others), so no gradient is computed to be thrown away.
type BackwardFn = Box<dyn Fn(&Tensor, &[bool]) -> Result<Vec<Option<Tensor>>> + Send + Sync>;

struct Node {
    id: usize,
    /// The op that made it (none for a leaf), named by errors from its backward rule.
    op: Option<Op>,
    value: Tensor,
    /// Settable on a leaf between steps ([`Var::set_requires_grad`]).
    requires_grad: AtomicBool,
    /// The accumulated gradient of a leaf.
    grad: Mutex<Option<Tensor>>,
    inputs: Vec<Var>,
    backward: Option<BackwardFn>,
}

/// A tensor in the graph: a leaf (a parameter or a constant) or the output of an op.
#[derive(Clone)]
pub struct Var(Arc<Node>);

impl std::fmt::Debug for Var {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Var")
            .field("shape", &self.0.value.shape())
            .field("requires_grad", &self.requires_grad())
            .field("leaf", &self.0.backward.is_none())
            .finish()
    }
}

thread_local! {
    static RECORDING: Cell<bool> = const { Cell::new(true) };
    static AUTOCAST: Cell<DType> = const { Cell::new(DType::F32) };
}

/// Runs `f` with the thread's `setting` at `value`, restored afterwards (even on a panic).
fn with_setting<C: Copy + 'static, T>(
    setting: &'static LocalKey<Cell<C>>,
    value: C,
    f: impl FnOnce() -> T,
) -> T {
    struct Restore<C: Copy + 'static>(&'static LocalKey<Cell<C>>, C);
    impl<C: Copy + 'static> Drop for Restore<C> {
        fn drop(&mut self) {
            self.0.with(|c| c.set(self.1));
        }
    }
    let _restore = Restore(setting, setting.with(|c| c.replace(value)));
    f()
}

/// Runs `f` with convolutions taking `dtype` operands, in their forward and in the gradients
/// recorded meanwhile (as `torch.autocast(dtype=...)`; other ops stay f32). f16 needs the
/// adapter's SHADER_F16.
pub fn autocast<T>(dtype: DType, f: impl FnOnce() -> T) -> T {
    with_setting(&AUTOCAST, dtype, f)
}

fn autocast_dtype() -> DType {
    AUTOCAST.with(|a| a.get())
}

/// Runs `f` without recording: ops inside it make constants (as `torch.no_grad()`).
pub fn no_grad<T>(f: impl FnOnce() -> T) -> T {
    with_setting(&RECORDING, false, f)
}

fn next_id() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

impl Var {
    fn leaf(value: Tensor, requires_grad: bool) -> Var {
        Var(Arc::new(Node {
            id: next_id(),
            op: None,
            value,
            requires_grad: AtomicBool::new(requires_grad),
            grad: Mutex::new(None),
            inputs: Vec::new(),
            backward: None,
        }))
    }

    /// A leaf whose gradient is wanted (a parameter).
    pub fn param(value: Tensor) -> Var {
        Self::leaf(value, true)
    }

    /// A leaf without a gradient (data, targets).
    pub fn constant(value: Tensor) -> Var {
        Self::leaf(value, false)
    }

    /// The output of `op` on `inputs`; `backward` is kept only while recording and when an
    /// input needs a gradient.
    pub(crate) fn from_op(op: Op, value: Tensor, inputs: &[&Var], backward: BackwardFn) -> Var {
        let recording = RECORDING.with(|r| r.get());
        if !recording || !inputs.iter().any(|v| v.requires_grad()) {
            return Self::constant(value);
        }
        Var(Arc::new(Node {
            id: next_id(),
            op: Some(op),
            value,
            requires_grad: AtomicBool::new(true),
            grad: Mutex::new(None),
            inputs: inputs.iter().map(|&v| v.clone()).collect(),
            backward: Some(backward),
        }))
    }

    pub fn value(&self) -> &Tensor {
        &self.0.value
    }

    pub fn shape(&self) -> &[usize] {
        self.0.value.shape()
    }

    pub fn requires_grad(&self) -> bool {
        self.0.requires_grad.load(Ordering::Relaxed)
    }

    /// Freezes (`false`) or unfreezes a leaf, as PyTorch's `requires_grad_`: the ops recorded
    /// afterwards compute no gradient for a frozen leaf nor for anything computed only from
    /// frozen leaves and constants. Set it between steps, not between a forward and its
    /// backward.
    pub fn set_requires_grad(&self, on: bool) -> Result<()> {
        if self.0.backward.is_some() {
            return Err(Error::InvalidArgument {
                op: "set_requires_grad",
                why: format!(
                    "only a leaf can be frozen, not the output of {}",
                    self.op_name()
                ),
            });
        }
        self.0.requires_grad.store(on, Ordering::Relaxed);
        Ok(())
    }

    /// The gradient accumulated into this leaf so far.
    pub fn grad(&self) -> Option<Tensor> {
        self.0
            .grad
            .lock()
            .expect("no panic holding the lock")
            .clone()
    }

    pub fn zero_grad(&self) {
        *self.0.grad.lock().expect("no panic holding the lock") = None;
    }

    /// The same value, cut from the graph: no gradient flows through it.
    pub fn detach(&self) -> Var {
        Self::constant(self.0.value.clone())
    }

    /// Accumulates d self / d leaf into every leaf that requires a gradient. `self` must hold
    /// one element (a loss).
    pub fn backward(&self) -> Result<()> {
        if self.0.value.numel() != 1 {
            return Err(Error::InvalidArgument {
                op: "backward",
                why: format!(
                    "starts from a single value, not shape {:?}",
                    self.0.value.shape()
                ),
            });
        }
        if !self.requires_grad() {
            return Err(Error::InvalidArgument {
                op: "backward",
                why: "nothing it was computed from requires a gradient".into(),
            });
        }
        let seed = Tensor::from_slice(self.0.value.gpu(), self.0.value.shape(), &[1.0])?;
        let mut grads: HashMap<usize, Tensor> = HashMap::from([(self.0.id, seed)]);
        for var in self.topological_order().iter().rev() {
            let Some(grad) = grads.remove(&var.0.id) else {
                continue;
            };
            let Some(backward) = &var.0.backward else {
                let mut slot = var.0.grad.lock().expect("no panic holding the lock");
                *slot = Some(match slot.take() {
                    Some(before) => before.add(&grad)?,
                    None => grad,
                });
                continue;
            };
            let needs: Vec<bool> = var.0.inputs.iter().map(Var::requires_grad).collect();
            let input_grads = backward(&grad, &needs)?;
            if input_grads.len() != needs.len() {
                return Err(var.broken_rule(format!(
                    "gave {} gradients for {} inputs",
                    input_grads.len(),
                    needs.len()
                )));
            }
            for (i, (input, g)) in var.0.inputs.iter().zip(input_grads).enumerate() {
                let g = match (g, needs[i]) {
                    (Some(g), true) => g,
                    (None, false) => continue,
                    (None, true) => {
                        return Err(var.broken_rule(format!("gave no gradient for input {i}")));
                    }
                    (Some(_), false) => {
                        return Err(var.broken_rule(format!(
                            "computed a gradient for input {i}, which needs none"
                        )));
                    }
                };
                if g.shape() != input.shape() {
                    return Err(Error::ShapeMismatch {
                        op: var.op_name(),
                        lhs: g.shape().to_vec(),
                        rhs: input.shape().to_vec(),
                        why: format!(
                            "the backward rule's gradient for input {i} has the wrong shape"
                        ),
                    });
                }
                let total = match grads.remove(&input.0.id) {
                    Some(before) => before.add(&g)?,
                    None => g,
                };
                grads.insert(input.0.id, total);
            }
        }
        Ok(())
    }

    /// The error for a backward rule that broke its contract.
    fn broken_rule(&self, why: String) -> Error {
        Error::InvalidArgument {
            op: self.op_name(),
            why: format!("its backward rule {why}"),
        }
    }

    /// The op that made this var, if it is not a leaf.
    pub fn op(&self) -> Option<Op> {
        self.0.op
    }

    fn op_name(&self) -> &'static str {
        self.0.op.map_or("leaf", Op::name)
    }

    /// The nodes that need a gradient, each after all of its inputs.
    fn topological_order(&self) -> Vec<Var> {
        let mut order = Vec::new();
        let mut seen = HashSet::new();
        // Iterative depth-first search: (node, whether its inputs are done).
        let mut stack = vec![(self.clone(), false)];
        while let Some((var, inputs_done)) = stack.pop() {
            if inputs_done {
                order.push(var);
                continue;
            }
            if !seen.insert(var.0.id) {
                continue;
            }
            stack.push((var.clone(), true));
            for input in var.0.inputs.iter().filter(|v| v.requires_grad()) {
                if !seen.contains(&input.0.id) {
                    stack.push((input.clone(), false));
                }
            }
        }
        order
    }
}
