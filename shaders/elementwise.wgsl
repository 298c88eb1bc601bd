// elementwise: flat f32 arrays, one element per invocation.
//
// The element count can exceed 65,535 workgroups of 256, so the grid is two-dimensional:
// element = ((wid.y * num_workgroups.x) + wid.x) * 256 + lid.x, and invocations past `len`
// return. Tensors larger than one storage binding are processed a binding-sized chunk per
// dispatch, with the chunk bound at an offset.
//
// entry `binary`:          out[i] = x[i] OP y[i]
//   bindings: 0 uniform Params, 1 x (read), 2 y (read), 3 out (read_write); workgroup 256
// entry `binary_inplace`:  out[i] = out[i] OP y[i]
//   bindings: 0 uniform Params, 2 y (read), 3 out (read_write); workgroup 256
//   OP (override BINARY): 0 add, 1 multiply, 2 relu's gradient (x > 0 ? y : 0)
// entry `unary`:           out[i] = F(x[i])
//   bindings: 0 uniform Params, 1 x (read), 3 out (read_write); workgroup 256
// entry `unary_inplace`:   out[i] = F(out[i])
//   bindings: 0 uniform Params, 3 out (read_write); workgroup 256
//   F (override UNARY): 0 scale by Params.scalar, 1 relu

struct Params {
    len: u32,
    scalar: f32,
}

override BINARY: u32 = 0u;
override UNARY: u32 = 0u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> y: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

fn element(wid: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> u32 {
    return (wid.y * nwg.x + wid.x) * 256u + lid.x;
}

fn combine(u: f32, v: f32) -> f32 {
    if BINARY == 1u {
        return u * v;
    }
    if BINARY == 2u {
        return select(0.0, v, u > 0.0);
    }
    return u + v;
}

fn apply(u: f32) -> f32 {
    if UNARY == 1u {
        return max(u, 0.0);
    }
    return u * p.scalar;
}

@compute @workgroup_size(256)
fn binary(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = element(wid, nwg, lid);
    if i < p.len {
        out[i] = combine(x[i], y[i]);
    }
}

@compute @workgroup_size(256)
fn binary_inplace(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = element(wid, nwg, lid);
    if i < p.len {
        out[i] = combine(out[i], y[i]);
    }
}

@compute @workgroup_size(256)
fn unary(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = element(wid, nwg, lid);
    if i < p.len {
        out[i] = apply(x[i]);
    }
}

@compute @workgroup_size(256)
fn unary_inplace(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = element(wid, nwg, lid);
    if i < p.len {
        out[i] = apply(out[i]);
    }
}
