// amp: the loss-scaling half of mixed precision. Gradients of a loss multiplied by S come
// back S times too large; this divides them by S in place and raises a flag if any was inf
// or NaN (an f16 product overflowed), so that the step can be skipped, as PyTorch's
// `_amp_foreach_non_finite_check_and_unscale_` does.
//
// Non-finite values are found from their bits (exponent all ones), which no fast-math
// rewriting of float comparisons can fold away.
//
// entry `unscale_check`: g[i] = g[i] * inv_scale; found = 1 if some g[i] was inf or NaN
//   bindings: 0 uniform Params, 1 g f32 (read_write), 2 found u32 (read_write, atomic)
//   workgroup 256; element i = (wid.y * num_workgroups.x + wid.x) * 256 + lid.x

struct Params {
    len: u32,
    inv_scale: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> g: array<f32>;
@group(0) @binding(2) var<storage, read_write> found: atomic<u32>;

@compute @workgroup_size(256)
fn unscale_check(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = (wid.y * nwg.x + wid.x) * 256u + lid.x;
    if i >= p.len {
        return;
    }
    let v = g[i];
    if (bitcast<u32>(v) & 0x7f800000u) == 0x7f800000u {
        atomicStore(&found, 1u);
    }
    g[i] = v * p.inv_scale;
}
