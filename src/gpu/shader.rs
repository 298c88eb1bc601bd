//! The WGSL kernel families compiled into lim, and what each needs from the adapter.

/// One `.wgsl` file of `shaders/`, embedded at build time.
#[derive(Debug)]
pub struct Shader {
    /// File stem: `shaders/<name>.wgsl`.
    pub name: &'static str,
    pub source: &'static str,
    /// Optional wgpu features the module needs; lim refuses to compile it without them.
    pub features: wgpu::Features,
}

macro_rules! shader {
    ($name:literal) => {
        shader!($name, wgpu::Features::empty())
    };
    ($name:literal, $features:expr) => {
        Shader {
            name: $name,
            source: include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/shaders/",
                $name,
                ".wgsl"
            )),
            features: $features,
        }
    };
}

pub const ELEMENTWISE: Shader = shader!("elementwise");
pub const REDUCE: Shader = shader!("reduce");
pub const MATMUL_NAIVE: Shader = shader!("matmul_naive");
pub const MATMUL_TILED: Shader = shader!("matmul_tiled");
pub const MATMUL_REG: Shader = shader!("matmul_reg");
pub const CAST: Shader = shader!("cast", wgpu::Features::SHADER_F16);

/// Every shader lim ships; tests check this against the files in `shaders/`.
pub const ALL: &[&Shader] = &[
    &ELEMENTWISE,
    &REDUCE,
    &MATMUL_NAIVE,
    &MATMUL_TILED,
    &MATMUL_REG,
    &CAST,
];
