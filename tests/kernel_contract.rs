//! The Rust↔WGSL boundary, checked by reflection: every shader has one `Params` uniform (every
//! dispatch binds one), and it has exactly one Rust twin (`lim::gpu::uniform::all`) with the same fields at the same offsets and sizes
//! and the same total size, and every shader binds its resources in group 0 with the uniform
//! at binding 0, where `Gpu::dispatch` puts it.

mod common;

use lim::gpu::shader::{ALL, Shader};
use lim::gpu::uniform::{Field, Layout, all};

/// The uniform structs of `shader` as naga lays them out: (binding, fields, size).
fn reflected_uniforms(shader: &Shader) -> Vec<(u32, Vec<Field>, usize)> {
    let module = naga::front::wgsl::parse_str(shader.source)
        .unwrap_or_else(|e| panic!("shaders/{}.wgsl: {e}", shader.name));
    let mut layouter = naga::proc::Layouter::default();
    layouter.update(module.to_ctx()).unwrap();
    let mut uniforms = Vec::new();
    for (_, var) in module.global_variables.iter() {
        let Some(binding) = &var.binding else {
            continue;
        };
        assert_eq!(
            binding.group,
            0,
            "shaders/{}.wgsl: `{}` is in group {}; lim binds group 0 only",
            shader.name,
            var.name.as_deref().unwrap_or("?"),
            binding.group
        );
        if var.space != naga::AddressSpace::Uniform {
            continue;
        }
        let naga::TypeInner::Struct { members, span } = &module.types[var.ty].inner else {
            panic!("shaders/{}.wgsl: the uniform is not a struct", shader.name);
        };
        let fields = members
            .iter()
            .map(|m| Field {
                name: leak(m.name.clone().unwrap_or_default()),
                offset: m.offset as usize,
                size: layouter[m.ty].size as usize,
            })
            .collect();
        uniforms.push((binding.binding, fields, *span as usize));
    }
    uniforms
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// Where the Rust layout and the WGSL struct differ, one line each.
fn differences(rust: &Layout, wgsl: &[Field], wgsl_size: usize) -> Vec<String> {
    let mut out = Vec::new();
    for i in 0..rust.fields.len().max(wgsl.len()) {
        match (rust.fields.get(i), wgsl.get(i)) {
            (Some(r), Some(w)) if r == w => {}
            (Some(r), Some(w)) => out.push(format!("field {i}: Rust {r:?}, WGSL {w:?}")),
            (Some(r), None) => out.push(format!("field {i}: Rust {r:?}, none in WGSL")),
            (None, Some(w)) => out.push(format!("field {i}: WGSL {w:?}, none in Rust")),
            (None, None) => unreachable!(),
        }
    }
    if rust.size != wgsl_size {
        out.push(format!("size: Rust {} bytes, WGSL {wgsl_size}", rust.size));
    }
    out
}

#[test]
fn every_uniform_matches_its_shaders_params() {
    let layouts = all();
    let mut problems = Vec::new();
    for shader in ALL {
        let twins: Vec<&Layout> = layouts
            .iter()
            .filter(|l| l.shaders.iter().any(|s| s.name == shader.name))
            .collect();
        let uniforms = reflected_uniforms(shader);
        match (&uniforms[..], &twins[..]) {
            ([(0, fields, size)], [rust]) => {
                for d in differences(rust, fields, *size) {
                    problems.push(format!(
                        "shaders/{}.wgsl vs {}: {d}",
                        shader.name, rust.name
                    ));
                }
            }
            _ => problems.push(format!(
                "shaders/{}.wgsl has uniforms at bindings {:?} and Rust twins {:?}: lim binds \
                 one uniform at binding 0, declared once with `uniform!`",
                shader.name,
                uniforms.iter().map(|u| u.0).collect::<Vec<_>>(),
                twins.iter().map(|t| t.name).collect::<Vec<_>>()
            )),
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn a_rust_struct_shorter_than_its_shaders_is_caught() {
    let layouts = all();
    let reduce = layouts
        .iter()
        .find(|l| l.name.ends_with("ops::reduce::Params"))
        .unwrap();
    let shader = reduce.shaders[0];
    let (_, fields, size) = &reflected_uniforms(shader)[0];
    assert!(differences(reduce, fields, *size).is_empty());
    let short = Layout {
        fields: &reduce.fields[..reduce.fields.len() - 1],
        size: reduce.size - 4,
        ..*reduce
    };
    let found = differences(&short, fields, *size);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found[0].contains("none in Rust") && found[1].starts_with("size"));
}

/// A kernel that writes `p.len` elements, whatever is bound: a bug the checks must contain.
const OVERRUN: Shader = Shader {
    name: "overrun",
    source: "struct Params { len: u32, }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    if (id.x < p.len) { out[id.x] = 7.0; }
}
",
    library: None,
    features: wgpu::Features::empty(),
};

lim::uniform! {
    struct OverrunParams for [OVERRUN] {
        len: u32,
    }
}

/// lim turns wgpu's shader bounds checks off on its own device only: on a device the caller
/// owns, a kernel writing past its binding must not reach the caller's other data. (Lavapipe
/// contains the write even unchecked, as robust buffer access does; there the flags are
/// what fails if the checks go.)
#[test]
fn bounds_checks_stay_on_for_a_device_the_caller_owns() {
    let own = common::gpu();
    assert!(!own.bounds_checks(), "lim's own device runs unchecked");
    let opts = lim::GpuOptions {
        bounds_checks: true,
        ..lim::GpuOptions::from_env().unwrap()
    };
    assert!(lim::Gpu::new(&opts).unwrap().bounds_checks(), "asked for");

    let shared = lim::Gpu::sharing(own.device(), own.queue());
    assert!(shared.bounds_checks());
    // The caller's data: 128 zeros, of which the kernel is given the first 64.
    let data = lim::Tensor::zeros(&shared, &[128], lim::DType::F32).unwrap();
    let kernel = shared.kernel(&OVERRUN, "main", &[]).unwrap();
    let first_half = wgpu::BufferBinding {
        buffer: data.buffer(),
        offset: 0,
        size: wgpu::BufferSize::new(64 * 4),
    };
    shared
        .dispatch(
            &kernel,
            &OverrunParams { len: 128 },
            &[("out", first_half)],
            [2, 1, 1],
        )
        .unwrap();
    let after = data.to_vec().unwrap();
    assert!(after[..63].iter().all(|&v| v == 7.0), "{after:?}");
    assert!(
        after[64..].iter().all(|&v| v == 0.0),
        "written past the binding: {after:?}"
    );
}

/// Buffers are bound by the names of the WGSL variables, looked up in the entry point's
/// reflected bindings: a name the entry point does not bind, one bound twice and one left
/// out are errors that name the kernel and the binding, and the dispatch records nothing.
#[test]
fn buffers_are_bound_by_their_wgsl_names() {
    // A device of its own, so that no other test's dispatches count.
    let gpu = lim::Gpu::new(&lim::GpuOptions::from_env().unwrap()).unwrap();
    let kernel = gpu.kernel(&OVERRUN, "main", &[]).unwrap();
    assert_eq!(
        kernel.bindings,
        [(0, "p".to_string()), (1, "out".to_string())]
    );
    let data = lim::Tensor::zeros(&gpu, &[64], lim::DType::F32).unwrap();
    let whole = || data.buffer().as_entire_buffer_binding();
    let params = OverrunParams { len: 64 };
    let before = gpu.counters().dispatches;
    for (bindings, wanted) in [
        (vec![("output", whole())], "no buffer binding `output`"),
        (
            vec![("out", whole()), ("out", whole())],
            "`out` is bound twice",
        ),
        (vec![], "`out` is not bound"),
    ] {
        let err = gpu
            .dispatch(&kernel, &params, &bindings, [1, 1, 1])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(wanted) && err.contains("overrun::main"),
            "{err}"
        );
    }
    assert_eq!(gpu.counters().dispatches, before, "nothing was recorded");
    gpu.dispatch(&kernel, &params, &[("out", whole())], [1, 1, 1])
        .unwrap();
    assert_eq!(data.to_vec().unwrap(), vec![7.0; 64]);
}

/// Every entry point of every shader reflects: its bindings are in group 0 with the uniform
/// at binding 0, so `Gpu::dispatch` can bind every other one by name.
#[test]
fn every_entry_point_binds_its_uniform_at_zero_and_named_buffers() {
    for shader in ALL {
        let Some(_) = shader.source.find("@compute") else {
            continue;
        };
        let entries = lim::gpu::reflect::entry_bindings(shader.source)
            .unwrap_or_else(|e| panic!("shaders/{}.wgsl: {e}", shader.name));
        assert!(!entries.is_empty(), "shaders/{}.wgsl", shader.name);
        for (entry, bindings) in &entries {
            assert_eq!(
                bindings.first().map(|b| b.0),
                Some(0),
                "shaders/{}.wgsl {entry}: {bindings:?}",
                shader.name
            );
            assert!(
                bindings.iter().all(|(_, name)| !name.is_empty()),
                "shaders/{}.wgsl {entry}: {bindings:?}",
                shader.name
            );
        }
    }
}
