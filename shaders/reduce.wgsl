// reduce: sum, mean or max along one axis. The input is viewed as [outer, len, inner] and the
// output as [outer, inner]: out[o, i] = REDUCE over j of x[o, j, i].
// OP (override): 0 sum, 1 mean, 2 max.
// Windows along outer: tensors too large to bind whole are bound a window of outer indices at
// a time, from aligned offsets; the window starts at element base_in of x and base_out of out.
//
// entry `serial`: one invocation per output, looping over the axis. Neighbouring invocations
//   read neighbouring words when inner > 1. Best when there are many outputs.
//   bindings: 0 uniform Params, 1 x (read), 2 out (read_write)
//   workgroup: 64; output = (wid.y * num_workgroups.x + wid.x) * 64 + lid.x
// entry `tree`: one workgroup of WG invocations per output: each sums a strided part of
//   the axis, then a tree in shared memory combines the partial results. Best for few, long
//   reductions (a whole tensor to one number).
//   bindings: 0 uniform Params, 1 x (read), 2 out (read_write)
//   workgroup: WG (override, a power of two, default 256); output = wid.y * num_workgroups.x + wid.x

struct Params {
    // outer indices in this window
    outer: u32,
    len: u32,
    inner: u32,
    // where the window's first outer index starts in x and in out
    base_in: u32,
    base_out: u32,
}

override OP: u32 = 0u;
override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

var<workgroup> partial: array<f32, WG>;

fn identity() -> f32 {
    if OP == 2u {
        return bitcast<f32>(0xff800000u); // -inf
    }
    return 0.0;
}

fn combine(u: f32, v: f32) -> f32 {
    if OP == 2u {
        return max(u, v);
    }
    return u + v;
}

fn finish(acc: f32) -> f32 {
    if OP == 1u {
        return acc / f32(p.len);
    }
    return acc;
}

@compute @workgroup_size(64)
fn serial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_id) lid: vec3<u32>) {
    let o = (wid.y * nwg.x + wid.x) * 64u + lid.x;
    if o >= p.outer * p.inner {
        return;
    }
    let base = p.base_in + (o / p.inner) * p.len * p.inner + o % p.inner;
    var acc = identity();
    for (var j = 0u; j < p.len; j++) {
        acc = combine(acc, x[base + j * p.inner]);
    }
    out[p.base_out + o] = finish(acc);
}

@compute @workgroup_size(WG)
fn tree(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_id) lid: vec3<u32>) {
    // `o` is the same for the whole workgroup, so every invocation reaches the barriers.
    let o = wid.y * nwg.x + wid.x;
    let in_range = o < p.outer * p.inner;
    var acc = identity();
    if in_range {
        let base = p.base_in + (o / p.inner) * p.len * p.inner + o % p.inner;
        for (var j = lid.x; j < p.len; j += WG) {
            acc = combine(acc, x[base + j * p.inner]);
        }
    }
    partial[lid.x] = acc;
    for (var step = WG / 2u; step > 0u; step /= 2u) {
        workgroupBarrier();
        if lid.x < step {
            partial[lid.x] = combine(partial[lid.x], partial[lid.x + step]);
        }
    }
    if in_range && lid.x == 0u {
        out[p.base_out + o] = finish(partial[0]);
    }
}
