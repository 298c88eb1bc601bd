//! The WGSL kernel families compiled into lim, and what each needs from the adapter.

/// One `.wgsl` file of `shaders/`, embedded at build time, with the shared library file
/// appended to it where it uses one (WGSL has no includes).
#[derive(Debug)]
pub struct Shader {
    /// File stem: `shaders/<name>.wgsl`.
    pub name: &'static str,
    /// The file, then the library's.
    pub source: &'static str,
    /// File stem of the appended library, if any.
    pub library: Option<&'static str>,
    /// Optional wgpu features the module needs; lim refuses to compile it without them.
    pub features: wgpu::Features,
}

macro_rules! wgsl {
    ($name:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/shaders/",
            $name,
            ".wgsl"
        ))
    };
}

macro_rules! shader {
    ($name:literal) => {
        shader!($name, wgpu::Features::empty())
    };
    ($name:literal, $features:expr) => {
        Shader {
            name: $name,
            source: wgsl!($name),
            library: None,
            features: $features,
        }
    };
    ($name:literal + $library:literal, $features:expr) => {
        Shader {
            name: $name,
            source: concat!(wgsl!($name), "\n", wgsl!($library)),
            library: Some($library),
            features: $features,
        }
    };
}

pub const ELEMENTWISE: Shader = shader!("elementwise");
pub const REDUCE: Shader = shader!("reduce");
pub const MATMUL_NAIVE: Shader = shader!("matmul_naive");
pub const MATMUL_TILED: Shader = shader!("matmul_tiled");
pub const MATMUL_REG: Shader = shader!("matmul_reg" + "matmul_vec4", wgpu::Features::empty());
pub const MATMUL_SUBGROUP: Shader =
    shader!("matmul_subgroup" + "matmul_vec4", wgpu::Features::SUBGROUP);
pub const HASH: Shader = shader!("hash");
pub const BROADCAST: Shader = shader!("broadcast");
pub const ROWS: Shader = shader!("rows");
pub const CONV2D: Shader = shader!("conv2d");
pub const BATCHNORM: Shader = shader!("batchnorm");
pub const POOL: Shader = shader!("pool");
pub const OPTIM: Shader = shader!("optim");
pub const SGD: Shader = shader!("sgd");
pub const CAST: Shader = shader!("cast", wgpu::Features::SHADER_F16);
pub const SINKHORN: Shader = shader!("sinkhorn");
pub const AUGMENT: Shader = shader!("augment");
pub const AMP: Shader = shader!("amp");

/// Every shader lim ships; tests check this (and the libraries it names) against the files
/// in `shaders/`.
pub const ALL: &[&Shader] = &[
    &ELEMENTWISE,
    &REDUCE,
    &MATMUL_NAIVE,
    &MATMUL_TILED,
    &MATMUL_REG,
    &MATMUL_SUBGROUP,
    &HASH,
    &BROADCAST,
    &ROWS,
    &CONV2D,
    &BATCHNORM,
    &POOL,
    &OPTIM,
    &SGD,
    &CAST,
    &SINKHORN,
    &AUGMENT,
    &AMP,
];

/// `source` with the `const NAME: u32 = ...;` declaration of each named constant set to the
/// given value: specialisation for constants that size arrays, which WGSL's pipeline
/// overrides cannot do. Each name must be declared exactly once, at the start of a line.
pub fn specialise(source: &str, consts: &[(&str, u32)]) -> Result<String, String> {
    let mut lines: Vec<String> = source.lines().map(str::to_string).collect();
    for &(name, value) in consts {
        let head = format!("const {name}: u32 = ");
        let mut hits = lines.iter_mut().filter(|l| l.starts_with(&head));
        match (hits.next(), hits.next()) {
            (Some(line), None) => *line = format!("{head}{value}u;"),
            (None, _) => return Err(format!("no line `{head}...;` to specialise")),
            (Some(_), Some(_)) => return Err(format!("`{head}...;` is declared twice")),
        }
    }
    let mut out = lines.join("\n");
    out.push('\n');
    Ok(out)
}

/// `source` with its operands in f16: `enable f16;` first, and its one operand alias
/// (`alias Operand = f32;` or `alias Operand4 = vec4<f32>;`, at the start of a line) rewritten
/// to f16. Kernels read operands through the alias and convert each read to f32, so one source
/// serves both precisions.
pub fn with_f16_operands(source: &str) -> Result<String, String> {
    const ALIASES: [(&str, &str); 2] = [
        ("alias Operand = f32;", "alias Operand = f16;"),
        ("alias Operand4 = vec4<f32>;", "alias Operand4 = vec4<f16>;"),
    ];
    let mut hits = 0;
    let lines: Vec<&str> = source
        .lines()
        .map(|line| match ALIASES.iter().find(|(f32, _)| line == *f32) {
            Some((_, f16)) => {
                hits += 1;
                *f16
            }
            None => line,
        })
        .collect();
    match hits {
        1 => Ok(format!("enable f16;\n{}\n", lines.join("\n"))),
        0 => Err(
            "no `alias Operand = f32;` or `alias Operand4 = vec4<f32>;` line to make f16".into(),
        ),
        _ => Err("more than one operand alias".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::{specialise, with_f16_operands};

    #[test]
    fn f16_operands_rewrite_the_one_alias() {
        let src = "// alias Operand = f32;\nalias Operand = f32;\nfn f() {}\n";
        assert_eq!(
            with_f16_operands(src).unwrap(),
            "enable f16;\n// alias Operand = f32;\nalias Operand = f16;\nfn f() {}\n"
        );
        assert!(with_f16_operands("fn f() {}\n").is_err());
        let twice = "alias Operand = f32;\nalias Operand4 = vec4<f32>;\n";
        assert!(
            with_f16_operands(twice)
                .unwrap_err()
                .contains("more than one")
        );
    }

    #[test]
    fn specialise_rewrites_named_constants_only() {
        let src =
            "const ROWS: u32 = 8u;\nconst COLS: u32 = 2u;\n// const ROWS: u32 = 1u;\nfn f() {}\n";
        let out = specialise(src, &[("ROWS", 32)]).unwrap();
        assert_eq!(
            out,
            "const ROWS: u32 = 32u;\nconst COLS: u32 = 2u;\n// const ROWS: u32 = 1u;\nfn f() {}\n"
        );
        assert!(
            specialise(src, &[("DEPTH", 1)])
                .unwrap_err()
                .contains("DEPTH")
        );
        let twice = "const A: u32 = 1u;\nconst A: u32 = 2u;\n";
        assert!(
            specialise(twice, &[("A", 3)])
                .unwrap_err()
                .contains("twice")
        );
    }
}
