// batchnorm: batch normalisation of x viewed as [N, C, S] (S = H W for BatchNorm2d, 1 for
// BatchNorm1d) per channel c, as torch.nn.BatchNorm: y = (x - mean) / sqrt(var + eps) * gamma
// + beta, with the batch's mean and biased variance in training and the running ones in
// evaluation; an optional ReLU fused on the output (override RELU).
//
// Batch windows: x, out and dy may be too large to bind whole, so every entry that reads
// them runs once per window of `images` images, bound from an aligned offset; the window's
// first image starts at element `base` of each of those bindings. The per-channel sums add
// up over the windows: the first window writes them (accumulate = 0), the others add, and
// the last divides where a mean is wanted (finish = 1).
//
// entry `sum`: one workgroup per channel: mean[c] = the sum of x over N and S (divided by
//   N S at the last window). A strided sum and a tree in shared memory.
//   bindings: 0 uniform Params, 1 x (read), 2 mean (read_write)
//   workgroup: 256; channel = wid.x
// entry `sum_sq_dev`: the same for var[c] = sum of (x - mean)^2, the biased variance once
//   divided: the variance in two passes, after the whole mean.
//   bindings: 0 uniform Params, 1 x (read), 2 mean, 11 var (read_write)
// entry `update_running`: running_mean = (1 - m) running_mean + m mean, running_var =
//   (1 - m) running_var + m var N S / (N S - 1), in place. One invocation per channel.
//   bindings: 0 uniform Params, 2 mean, 11 var, 8 running_mean, 9 running_var (read_write)
//   workgroup: 64
// entry `apply`: out = (x - mean) / sqrt(var + eps) * gamma + beta (then ReLU if RELU), one
//   invocation per element of the window; mean and var are the batch's or the running ones.
//   bindings: 0 uniform Params, 1 x (read), 2 mean, 11 var, 3 gamma (read), 4 beta (read),
//   5 out (read_write); workgroup 256, element = (wid.y * num_workgroups.x + wid.x) * 256 + lid.x
// entry `backward_sums`: one workgroup per channel: sum_dy[c] (beta's gradient) and
//   sum_dy_xhat[c] (gamma's), xhat = (x - mean) / sqrt(var + eps).
//   bindings: 0, 1 x, 2 mean, 11 var, 6 dy (read), 7 sum_dy, 10 sum_dy_xhat (read_write)
// entry `backward_apply`: dx = gamma / sqrt(var + eps) (dy - (sum dy + xhat sum dy xhat) / (N S))
//   in training (TRAINING = 1), dx = gamma / sqrt(var + eps) dy with frozen statistics.
//   bindings: 0, 1 x, 2 mean, 11 var, 3 gamma, 6 dy, 7 sum_dy, 10 sum_dy_xhat, 5 out;
//   workgroup 256 as `apply`

struct Params {
    // images in the whole batch
    n: u32,
    c: u32,
    s: u32,
    eps: f32,
    momentum: f32,
    // this window: its images, where its first image starts, whether the per-channel sums
    // add to earlier windows' and whether they are complete after it
    images: u32,
    base: u32,
    accumulate: u32,
    finish: u32,
}

override RELU: bool = false;
override TRAINING: bool = true;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> mean: array<f32>;
@group(0) @binding(11) var<storage, read_write> var_: array<f32>;
@group(0) @binding(3) var<storage, read> gamma: array<f32>;
@group(0) @binding(4) var<storage, read> beta: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
@group(0) @binding(6) var<storage, read> dy: array<f32>;
@group(0) @binding(7) var<storage, read_write> sum_dy: array<f32>;
@group(0) @binding(10) var<storage, read_write> sum_dy_xhat: array<f32>;
@group(0) @binding(8) var<storage, read_write> running_mean: array<f32>;
@group(0) @binding(9) var<storage, read_write> running_var: array<f32>;

var<workgroup> partial: array<vec2<f32>, 256>;

// The index of the k-th element of channel c in the window (k over its images and S).
fn index_of(c: u32, k: u32) -> u32 {
    let n = k / p.s;
    return p.base + (n * p.c + c) * p.s + k % p.s;
}

// Adds a window's sum to the earlier windows' and divides the total at the last.
fn combine(earlier: f32, window: f32) -> f32 {
    var total = window;
    if p.accumulate != 0u {
        total += earlier;
    }
    if p.finish != 0u {
        total /= f32(p.n * p.s);
    }
    return total;
}

fn tree(lid: u32) -> vec2<f32> {
    for (var half = 128u; half > 0u; half /= 2u) {
        workgroupBarrier();
        if lid < half {
            partial[lid] += partial[lid + half];
        }
    }
    workgroupBarrier();
    let total = partial[0];
    workgroupBarrier();
    return total;
}

@compute @workgroup_size(256)
fn sum(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = wid.x;
    var acc = 0.0;
    for (var k = lid.x; k < p.images * p.s; k += 256u) {
        acc += x[index_of(c, k)];
    }
    partial[lid.x] = vec2<f32>(acc, 0.0);
    let total = tree(lid.x).x;
    if lid.x == 0u {
        mean[c] = combine(mean[c], total);
    }
}

@compute @workgroup_size(256)
fn sum_sq_dev(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = wid.x;
    let m = mean[c];
    var dev = 0.0;
    for (var k = lid.x; k < p.images * p.s; k += 256u) {
        let d = x[index_of(c, k)] - m;
        dev += d * d;
    }
    partial[lid.x] = vec2<f32>(dev, 0.0);
    let total = tree(lid.x).x;
    if lid.x == 0u {
        var_[c] = combine(var_[c], total);
    }
}

@compute @workgroup_size(64)
fn update_running(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    if c >= p.c {
        return;
    }
    let count = f32(p.n * p.s);
    let unbiased = var_[c] * count / max(count - 1.0, 1.0);
    running_mean[c] = (1.0 - p.momentum) * running_mean[c] + p.momentum * mean[c];
    running_var[c] = (1.0 - p.momentum) * running_var[c] + p.momentum * unbiased;
}

fn element(wid: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> u32 {
    return (wid.y * nwg.x + wid.x) * 256u + lid.x;
}

@compute @workgroup_size(256)
fn apply(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_id) lid: vec3<u32>) {
    let e = element(wid, nwg, lid);
    if e >= p.images * p.c * p.s {
        return;
    }
    let c = (e / p.s) % p.c;
    var y = (x[p.base + e] - mean[c]) * inverseSqrt(var_[c] + p.eps) * gamma[c] + beta[c];
    if RELU {
        y = max(y, 0.0);
    }
    out[p.base + e] = y;
}

@compute @workgroup_size(256)
fn backward_sums(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = wid.x;
    let m = mean[c];
    let inv = inverseSqrt(var_[c] + p.eps);
    var acc = vec2<f32>(0.0);
    for (var k = lid.x; k < p.images * p.s; k += 256u) {
        let i = index_of(c, k);
        acc += vec2<f32>(dy[i], dy[i] * (x[i] - m) * inv);
    }
    partial[lid.x] = acc;
    var total = tree(lid.x);
    if lid.x == 0u {
        if p.accumulate != 0u {
            total += vec2<f32>(sum_dy[c], sum_dy_xhat[c]);
        }
        sum_dy[c] = total.x;
        sum_dy_xhat[c] = total.y;
    }
}

@compute @workgroup_size(256)
fn backward_apply(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_id) lid: vec3<u32>) {
    let e = element(wid, nwg, lid);
    if e >= p.images * p.c * p.s {
        return;
    }
    let c = (e / p.s) % p.c;
    let inv = inverseSqrt(var_[c] + p.eps);
    var g = dy[p.base + e];
    if TRAINING {
        let xhat = (x[p.base + e] - mean[c]) * inv;
        g -= (sum_dy[c] + xhat * sum_dy_xhat[c]) / f32(p.n * p.s);
    }
    out[p.base + e] = gamma[c] * inv * g;
}
