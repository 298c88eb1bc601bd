//! Every `.wgsl` file is parsed and validated by naga (a shader error fails `cargo test` with
//! the file and line), is registered in `lim::gpu::shader::ALL`, and compiles on the device.

mod common;

use std::path::{Path, PathBuf};

use lim::GpuError;
use lim::gpu::shader::{ALL, Shader};

fn shader_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders")
}

fn capabilities(features: wgpu::Features) -> naga::valid::Capabilities {
    let mut caps = naga::valid::Capabilities::default();
    if features.contains(wgpu::Features::SHADER_F16) {
        caps |= naga::valid::Capabilities::SHADER_FLOAT16;
    }
    if features.contains(wgpu::Features::SUBGROUP) {
        caps |= naga::valid::Capabilities::SUBGROUP;
    }
    caps
}

/// Parses and validates WGSL. Errors name the file, and `path:line:column` where naga knows
/// the span.
fn validate(path: &str, source: &str, features: wgpu::Features) -> Result<naga::Module, String> {
    let named = |report: String| {
        if report.contains(path) {
            report
        } else {
            format!("{path}: {report}")
        }
    };
    let module = naga::front::wgsl::parse_str(source)
        .map_err(|e| named(e.emit_to_string_with_path(source, path)))?;
    naga::valid::Validator::new(naga::valid::ValidationFlags::all(), capabilities(features))
        .validate(&module)
        .map_err(|e| named(e.emit_to_string_with_path(source, path)))?;
    Ok(module)
}

fn registered(name: &str) -> &'static Shader {
    ALL.iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("shaders/{name}.wgsl is not listed in lim::gpu::shader::ALL"))
}

#[test]
fn every_shader_file_is_registered_and_valid() {
    let mut files: Vec<_> = std::fs::read_dir(shader_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wgsl"))
        .collect();
    files.sort();
    assert!(files.len() >= 7, "found only {files:?}");
    let read =
        |name: &str| std::fs::read_to_string(shader_dir().join(format!("{name}.wgsl"))).unwrap();
    let libraries: Vec<&str> = ALL.iter().filter_map(|s| s.library).collect();
    for path in &files {
        let name = path.file_stem().unwrap().to_str().unwrap();
        if libraries.contains(&name) {
            continue; // validated as part of each shader that appends it
        }
        let shader = registered(name);
        let on_disk = match shader.library {
            Some(library) => format!("{}\n{}", read(name), read(library)),
            None => read(name),
        };
        // The shader's own lines come first, so reported line numbers are the file's; past
        // its end they are the library's, offset by the file's length.
        let shown = match shader.library {
            Some(library) => format!("shaders/{name}.wgsl (+ {library}.wgsl)"),
            None => format!("shaders/{name}.wgsl"),
        };
        if let Err(report) = validate(&shown, &on_disk, shader.features) {
            panic!("{report}");
        }
    }
    assert_eq!(
        files.len(),
        ALL.len() + 1,
        "ALL lists a shader that has no file, or a library is unused"
    );
}

#[test]
fn every_specialisation_of_the_matmul_kernels_is_valid() {
    use lim::gpu::shader::specialise;
    use lim::ops::matmul::MatmulVariant;
    let mut checked = 0;
    for variant in MatmulVariant::all() {
        for sg in [4, 8, 16, 32, 64] {
            let consts = variant.specialisation(sg);
            if consts.is_empty() || !variant.fits_subgroup(sg) {
                continue;
            }
            let shader = variant.shader();
            let source = specialise(shader.source, &consts).unwrap();
            let shown = format!("shaders/{}.wgsl {consts:?}", shader.name);
            if let Err(report) = validate(&shown, &source, shader.features) {
                panic!("{report}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 40, "only {checked} specialisations");
}

#[test]
fn a_broken_shader_is_reported_with_file_and_line() {
    let source = "@compute @workgroup_size(1)\nfn main() {\n    let x: f32 = 1u;\n}\n";
    let report = validate("shaders/broken.wgsl", source, wgpu::Features::empty()).unwrap_err();
    assert!(report.contains("shaders/broken.wgsl:3:"), "{report}");
    let f16_without_feature = "enable f16;\nfn f() -> f16 { return 1.0h; }\n";
    let report = validate(
        "shaders/half.wgsl",
        f16_without_feature,
        wgpu::Features::empty(),
    )
    .unwrap_err();
    assert!(
        report.starts_with("shaders/half.wgsl: ") && report.contains("FLOAT16"),
        "{report}"
    );
}

#[test]
fn every_entry_point_compiles_on_the_device() {
    let gpu = common::gpu();
    for shader in ALL {
        let module = validate(shader.name, shader.source, shader.features).unwrap();
        assert!(
            !module.entry_points.is_empty(),
            "{} has no entry point",
            shader.name
        );
        for entry in &module.entry_points {
            let result = gpu.kernel(shader, &entry.name, &[]);
            if gpu.features().contains(shader.features) {
                result.unwrap_or_else(|e| panic!("{}::{}: {e}", shader.name, entry.name));
            } else {
                let err = result.unwrap_err();
                assert!(matches!(err, GpuError::MissingFeature { .. }), "{err}");
            }
        }
    }
}
