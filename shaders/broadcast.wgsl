// broadcast: the inverse of a reduction's shape change. The output is viewed as
// [outer, len, inner] and the input as [outer, inner]: out[o, j, i] = x[o, i] for every j.
// Gradients of sum and mean, and a bias added to every row, are this. Tensors too large to
// bind whole are bound a window of outer indices at a time (see reduce.wgsl).
//
// entry `expand`: one invocation per output element.
//   bindings: 0 uniform Params, 1 x (read), 2 out (read_write)
//   workgroup: 256; element = (wid.y * num_workgroups.x + wid.x) * 256 + lid.x

struct Params {
    // outer indices in this window
    outer: u32,
    len: u32,
    inner: u32,
    // where the window's first outer index starts in x and in out
    base_in: u32,
    base_out: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn expand(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_id) lid: vec3<u32>) {
    let e = (wid.y * nwg.x + wid.x) * 256u + lid.x;
    if e >= p.outer * p.len * p.inner {
        return;
    }
    let i = e % p.inner;
    let o = e / (p.inner * p.len);
    out[p.base_out + e] = x[p.base_in + o * p.inner + i];
}
