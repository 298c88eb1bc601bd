// pool: max pooling over K x K windows with stride and padding (padding never wins), NCHW,
// remembering where each maximum came from for the gradient.
//
// entry `max_forward`: out[n, c, p, q] = max over the window; argmax[...] = the index within
//   the input plane (y W + z) of the first maximum in row-major window order, as PyTorch.
//   One invocation per output. bindings: 0 uniform Params, 1 x (read), 2 out (read_write),
//   3 argmax (read_write)
// entry `max_backward`: dx[n, c, y, z] = sum of dy over the outputs whose argmax is (y, z): a
//   gather over the windows containing (y, z), so no atomics. One invocation per input
//   element (what a GPU wants). bindings: 0 uniform Params, 4 dy (read), 5 argmax (read),
//   6 dx (read_write)
// entry `max_backward_rows`: the same, one invocation per input row, walking along it with
//   the outputs' positions kept as a running quotient and remainder: no division per
//   element, which software adapters compute lane by lane. The autotuner picks per shape.
// workgroup: 256; element = (wid.y * num_workgroups.x + wid.x) * 256 + lid.x
//
// Plane windows: the tensors may be too large to bind whole, so each entry runs once per
// window of `planes` planes, bound from aligned offsets; the window's first plane starts at
// element `base_in` of x and dx and `base_out` of out, argmax and dy. Argmax indices are
// within a plane, so windows need nothing else.

struct Params {
    // planes in this window
    planes: u32,
    h: u32,
    w: u32,
    oh: u32,
    ow: u32,
    k: u32,
    stride: u32,
    pad: u32,
    base_in: u32,
    base_out: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<storage, read_write> argmax: array<u32>;
@group(0) @binding(4) var<storage, read> dy: array<f32>;
@group(0) @binding(5) var<storage, read> argmax_in: array<u32>;
@group(0) @binding(6) var<storage, read_write> dx: array<f32>;

fn element(wid: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> u32 {
    return (wid.y * nwg.x + wid.x) * 256u + lid.x;
}

@compute @workgroup_size(256)
fn max_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_id) lid: vec3<u32>) {
    let e = element(wid, nwg, lid);
    if e >= p.planes * p.oh * p.ow {
        return;
    }
    let q = e % p.ow;
    let row = (e / p.ow) % p.oh;
    let plane = e / (p.ow * p.oh);
    var best = bitcast<f32>(0xff800000u); // -inf
    var at = 0u;
    for (var i = 0u; i < p.k; i++) {
        let y = i32(row * p.stride + i) - i32(p.pad);
        if y < 0 || y >= i32(p.h) {
            continue;
        }
        for (var j = 0u; j < p.k; j++) {
            let z = i32(q * p.stride + j) - i32(p.pad);
            if z < 0 || z >= i32(p.w) {
                continue;
            }
            let idx = u32(y) * p.w + u32(z);
            let v = x[p.base_in + plane * p.h * p.w + idx];
            // NaN propagates, as in PyTorch.
            if v > best || v != v {
                best = v;
                at = idx;
            }
        }
    }
    out[p.base_out + e] = best;
    argmax[p.base_out + e] = at;
}

@compute @workgroup_size(256)
fn max_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_id) lid: vec3<u32>) {
    let e = element(wid, nwg, lid);
    if e >= p.planes * p.h * p.w {
        return;
    }
    let idx = e % (p.h * p.w);
    let plane = e / (p.h * p.w);
    let y = idx / p.w;
    let z = idx % p.w;
    var acc = 0.0;
    for (var i = 0u; i < p.k; i++) {
        let t = i32(y + p.pad) - i32(i);
        if t < 0 || t % i32(p.stride) != 0 || t / i32(p.stride) >= i32(p.oh) {
            continue;
        }
        let row = u32(t) / p.stride;
        for (var j = 0u; j < p.k; j++) {
            let u = i32(z + p.pad) - i32(j);
            if u < 0 || u % i32(p.stride) != 0 || u / i32(p.stride) >= i32(p.ow) {
                continue;
            }
            let o = p.base_out + (plane * p.oh + row) * p.ow + u32(u) / p.stride;
            if argmax_in[o] == idx {
                acc += dy[o];
            }
        }
    }
    dx[p.base_in + e] = acc;
}

@compute @workgroup_size(256)
fn max_backward_rows(@builtin(workgroup_id) wid: vec3<u32>,
                     @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_id) lid: vec3<u32>) {
    let line = element(wid, nwg, lid);
    if line >= p.planes * p.h {
        return;
    }
    let plane = line / p.h;
    let y = line % p.h;
    // Output rows r whose windows hold y: r stride <= y + pad < r stride + k.
    let top = y + p.pad;
    let last_row = min(top / p.stride, p.oh - 1u);
    var first_row = 0u;
    if top + 1u > p.k {
        first_row = (top + 1u - p.k + p.stride - 1u) / p.stride;
    }
    // Windows that may hold a column: the one starting at or before it, and `reach` more.
    let reach = (p.k - 1u) / p.stride;
    var last = p.pad / p.stride;
    var remainder = p.pad % p.stride;
    let out_plane = p.base_out + plane * p.oh * p.ow;
    for (var z = 0u; z < p.w; z++) {
        var acc = 0.0;
        for (var r = first_row; r <= last_row; r++) {
            for (var m = 0u; m <= min(reach, last); m++) {
                let q = last - m;
                if q * p.stride + p.k <= z + p.pad {
                    break;
                }
                let o = out_plane + r * p.ow + q;
                if q < p.ow && argmax_in[o] == y * p.w + z {
                    acc += dy[o];
                }
            }
        }
        dx[p.base_in + line * p.w + z] = acc;
        remainder += 1u;
        if remainder == p.stride {
            remainder = 0u;
            last += 1u;
        }
    }
}
