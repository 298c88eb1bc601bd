//! Element types of tensor storage, apart from `tensor` so that `error` can name them without
//! depending on tensors.

/// Element type of a tensor's storage. Kernels compute in f32; f16 is a storage format,
/// available where the adapter has SHADER_F16.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    F32,
    F16,
}

impl DType {
    pub fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 => 2,
        }
    }
}
