//! The Rust twins of the kernels' WGSL `Params` uniforms.
//!
//! Each is declared with [`uniform!`](crate::uniform), which derives its byte layout (every
//! field's name, offset and size) and names the shaders whose `var<uniform> p: Params` it
//! fills. [`Gpu::dispatch`](super::Gpu::dispatch) takes only such a type, refuses a kernel of
//! another shader, and binds exactly its bytes; `tests/kernel_contract.rs` compares every
//! layout in [`all`] with the struct naga reflects from the shader, so a field added, moved or
//! dropped on one side only fails a test instead of reading stale bytes.

use super::shader::{self, Shader};

/// One field of a uniform: name, byte offset and byte size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    pub name: &'static str,
    pub offset: usize,
    pub size: usize,
}

/// A kernel's uniform parameters, as the shaders in `SHADERS` declare them.
pub trait Uniform: bytemuck::Pod {
    /// The Rust type's name, for reports.
    const NAME: &'static str;
    const SHADERS: &'static [&'static Shader];
    const FIELDS: &'static [Field];
}

/// A uniform's layout, gathered for the contract test.
#[derive(Debug)]
pub struct Layout {
    pub name: &'static str,
    pub shaders: &'static [&'static Shader],
    pub fields: &'static [Field],
    pub size: usize,
}

fn layout<P: Uniform>() -> Layout {
    Layout {
        name: P::NAME,
        shaders: P::SHADERS,
        fields: P::FIELDS,
        size: std::mem::size_of::<P>(),
    }
}

/// Declares a `#[repr(C)]` uniform struct and its [`Uniform`] layout:
/// `uniform! { struct Params for [shader::REDUCE] { outer: u32, ... } }`.
#[macro_export]
#[doc(hidden)]
macro_rules! uniform {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident for [$($shader:path),+ $(,)?] {
            $($(#[$field_meta:meta])* $field_vis:vis $field:ident : $ty:ty),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
        $vis struct $name {
            $($(#[$field_meta])* $field_vis $field: $ty),*
        }

        impl $crate::gpu::uniform::Uniform for $name {
            const NAME: &'static str = concat!(module_path!(), "::", stringify!($name));
            const SHADERS: &'static [&'static $crate::gpu::shader::Shader] = &[$(&$shader),+];
            const FIELDS: &'static [$crate::gpu::uniform::Field] = &[$(
                $crate::gpu::uniform::Field {
                    name: stringify!($field),
                    offset: std::mem::offset_of!($name, $field),
                    size: std::mem::size_of::<$ty>(),
                }
            ),*];
        }
    };
}

uniform! {
    /// `shaders/cast.wgsl`: the element count.
    pub(crate) struct CastParams for [shader::CAST] {
        pub len: u32,
    }
}

/// Every uniform lim dispatches with.
pub fn all() -> Vec<Layout> {
    use crate::{hash, ops, optim, ssl};
    vec![
        layout::<CastParams>(),
        layout::<ops::elementwise::Params>(),
        layout::<ops::reduce::Params>(),
        layout::<ops::broadcast::Params>(),
        layout::<ops::rows::Params>(),
        layout::<ops::matmul::Params>(),
        layout::<ops::conv2d::Params>(),
        layout::<ops::batchnorm::Params>(),
        layout::<ops::pool::Params>(),
        layout::<ops::amp::Params>(),
        layout::<optim::adam::Params>(),
        layout::<optim::sgd::StepParams>(),
        layout::<hash::gpu::Params>(),
        layout::<ssl::sinkhorn::Params>(),
        layout::<ssl::augment::Params>(),
    ]
}
