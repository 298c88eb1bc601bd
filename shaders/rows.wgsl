// rows: functions of each row of a [rows, n] matrix (the last axis), and their gradients.
// One invocation per row, looping over it: rows are short in lim's uses (logits over a few
// thousand prototypes at most, feature vectors of a few thousand).
//
// entry `softmax`:      y = exp(x - max x) / sum exp(x - max x)
// entry `log_softmax`:  y = x - max x - log sum exp(x - max x)
// entry `l2_normalize`: y = x / max(||x||, 1e-12)              (torch.nn.functional.normalize)
//   bindings: 0 uniform Params, 1 x (read), 3 out (read_write)
// entry `softmax_backward`:      dx = y * (g - sum(g * y))          with a = y (the output)
// entry `log_softmax_backward`:  dx = g - exp(y) * sum(g)           with a = y (the output)
// entry `l2_normalize_backward`: dx = (g - y * sum(g * y)) / max(||x||, 1e-12), y = x / that,
//                                 and dx = g / 1e-12 where ||x|| < 1e-12   with a = x (the input)
//   bindings: 0 uniform Params, 1 a (read), 2 g (read), 3 out (read_write)
// workgroup: 64; row = (wid.y * num_workgroups.x + wid.x) * 64 + lid.x
// Row windows: a matrix too large to bind whole is bound a window of rows at a time, from
// an aligned offset; the window's first row starts at element `base`.

struct Params {
    // rows in this window
    rows: u32,
    n: u32,
    // where the window's first row starts in every binding
    base: u32,
}

const NORM_EPS: f32 = 1e-12;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> g: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

fn row_of(wid: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> u32 {
    return (wid.y * nwg.x + wid.x) * 64u + lid.x;
}

fn row_max(base: u32) -> f32 {
    var m = a[base];
    for (var j = 1u; j < p.n; j++) {
        m = max(m, a[base + j]);
    }
    return m;
}

fn sum_exp(base: u32, m: f32) -> f32 {
    var s = 0.0;
    for (var j = 0u; j < p.n; j++) {
        s += exp(a[base + j] - m);
    }
    return s;
}

fn row_length(base: u32) -> f32 {
    var s = 0.0;
    for (var j = 0u; j < p.n; j++) {
        s += a[base + j] * a[base + j];
    }
    return sqrt(s);
}

fn norm(base: u32) -> f32 {
    return max(row_length(base), NORM_EPS);
}

// sum(g * a) over the row.
fn dot_g(base: u32) -> f32 {
    var d = 0.0;
    for (var j = 0u; j < p.n; j++) {
        d += g[base + j] * a[base + j];
    }
    return d;
}

@compute @workgroup_size(64)
fn softmax(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_id) lid: vec3<u32>) {
    let row = row_of(wid, nwg, lid);
    if row >= p.rows {
        return;
    }
    let base = p.base + row * p.n;
    let m = row_max(base);
    let inv = 1.0 / sum_exp(base, m);
    for (var j = 0u; j < p.n; j++) {
        out[base + j] = exp(a[base + j] - m) * inv;
    }
}

@compute @workgroup_size(64)
fn log_softmax(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_id) lid: vec3<u32>) {
    let row = row_of(wid, nwg, lid);
    if row >= p.rows {
        return;
    }
    let base = p.base + row * p.n;
    let m = row_max(base);
    let shift = m + log(sum_exp(base, m));
    for (var j = 0u; j < p.n; j++) {
        out[base + j] = a[base + j] - shift;
    }
}

@compute @workgroup_size(64)
fn l2_normalize(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_id) lid: vec3<u32>) {
    let row = row_of(wid, nwg, lid);
    if row >= p.rows {
        return;
    }
    let base = p.base + row * p.n;
    let inv = 1.0 / norm(base);
    for (var j = 0u; j < p.n; j++) {
        out[base + j] = a[base + j] * inv;
    }
}

@compute @workgroup_size(64)
fn softmax_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_id) lid: vec3<u32>) {
    let row = row_of(wid, nwg, lid);
    if row >= p.rows {
        return;
    }
    let base = p.base + row * p.n;
    let dot = dot_g(base);
    for (var j = 0u; j < p.n; j++) {
        out[base + j] = a[base + j] * (g[base + j] - dot);
    }
}

@compute @workgroup_size(64)
fn log_softmax_backward(@builtin(workgroup_id) wid: vec3<u32>,
                        @builtin(num_workgroups) nwg: vec3<u32>,
                        @builtin(local_invocation_id) lid: vec3<u32>) {
    let row = row_of(wid, nwg, lid);
    if row >= p.rows {
        return;
    }
    let base = p.base + row * p.n;
    var total = 0.0;
    for (var j = 0u; j < p.n; j++) {
        total += g[base + j];
    }
    for (var j = 0u; j < p.n; j++) {
        out[base + j] = g[base + j] - exp(a[base + j]) * total;
    }
}

@compute @workgroup_size(64)
fn l2_normalize_backward(@builtin(workgroup_id) wid: vec3<u32>,
                         @builtin(num_workgroups) nwg: vec3<u32>,
                         @builtin(local_invocation_id) lid: vec3<u32>) {
    let row = row_of(wid, nwg, lid);
    if row >= p.rows {
        return;
    }
    let base = p.base + row * p.n;
    let size = row_length(base);
    if size < NORM_EPS {
        // The norm is clamped to a constant there: y = x / eps.
        for (var j = 0u; j < p.n; j++) {
            out[base + j] = g[base + j] / NORM_EPS;
        }
        return;
    }
    let dot = dot_g(base);
    let inv = 1.0 / size;
    for (var j = 0u; j < p.n; j++) {
        let y = a[base + j] * inv;
        out[base + j] = (g[base + j] - y * dot * inv) * inv;
    }
}
