// sgd: SGD as torch.optim.SGD (weight decay, momentum with dampening, Nesterov), with the
// layer-wise scaling of LARS as lightning-bolts 0.5 (pl_bolts.optimizers.LARS) as an option.
// The LARS norms stay on the device: nothing is read back.
//
//   LARS, if wd != 0 and |p| != 0 and |g| != 0:
//       d = (g + wd p) * trust |p| / (|g| + |p| wd + eps)
//   LARS otherwise:  d = g                (no weight decay in this branch, as bolts)
//   SGD:             d = g + wd p
//   buf = d at the first step, else momentum buf + (1 - dampening) d  (momentum != 0 only)
//   d = d + momentum buf (Nesterov) or buf (momentum != 0);  p = p - lr d
//
// entry `norms` (LARS): partial sums of p^2 and g^2. Workgroup k sums elements
//   k*256 + lid.x, striding by groups*256, then a tree in shared memory;
//   partial[2k] = sum p^2, partial[2k+1] = sum g^2.
//   bindings: 0 uniform Params, 1 grad (read), 2 param, 5 partial (read_write)
//   workgroup: 256; `groups` workgroups along x
// entry `trust` (LARS): one workgroup adds the partial sums and writes factor[0] = the LARS
//   multiplier (1 in the unscaled branch) and factor[1] = the weight decay it applies with
//   (0 in the unscaled branch).
//   bindings: 0 uniform Params, 5 partial, 6 factor (read_write)
//   workgroup: 256; one workgroup
// entry `step`: the update, one invocation per element: d = (g + factor[1] p) factor[0],
//   so plain SGD binds factor = [1, wd]. `buf` is only touched when momentum != 0 (any
//   buffer may be bound otherwise).
//   bindings: 0 uniform Params, 1 grad (read), 2 param, 3 buf, 6 factor (read_write)
//   workgroup: 256; element = (wid.y * num_workgroups.x + wid.x) * 256 + lid.x

struct Params {
    len: u32,
    // workgroups of `norms`, at most 256
    groups: u32,
    lr: f32,
    momentum: f32,
    dampening: f32,
    weight_decay: f32,
    trust_coefficient: f32,
    eps: f32,
    // 1 at the parameter's first step: the buffer starts as d
    first: u32,
    nesterov: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> grad: array<f32>;
@group(0) @binding(2) var<storage, read_write> param: array<f32>;
@group(0) @binding(3) var<storage, read_write> buf: array<f32>;
@group(0) @binding(5) var<storage, read_write> partial: array<f32>;
@group(0) @binding(6) var<storage, read_write> factor: array<f32>;

var<workgroup> sum_p: array<f32, 256>;
var<workgroup> sum_g: array<f32, 256>;

// Adds the 256 values of sum_p and sum_g into their first elements.
fn tree(lid: u32) {
    for (var step = 128u; step > 0u; step /= 2u) {
        workgroupBarrier();
        if lid < step {
            sum_p[lid] += sum_p[lid + step];
            sum_g[lid] += sum_g[lid + step];
        }
    }
}

@compute @workgroup_size(256)
fn norms(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    var acc_p = 0.0;
    var acc_g = 0.0;
    for (var i = wid.x * 256u + lid.x; i < p.len; i += p.groups * 256u) {
        acc_p += param[i] * param[i];
        acc_g += grad[i] * grad[i];
    }
    sum_p[lid.x] = acc_p;
    sum_g[lid.x] = acc_g;
    tree(lid.x);
    if lid.x == 0u {
        partial[2u * wid.x] = sum_p[0];
        partial[2u * wid.x + 1u] = sum_g[0];
    }
}

@compute @workgroup_size(256)
fn trust(@builtin(local_invocation_id) lid: vec3<u32>) {
    var acc_p = 0.0;
    var acc_g = 0.0;
    for (var k = lid.x; k < p.groups; k += 256u) {
        acc_p += partial[2u * k];
        acc_g += partial[2u * k + 1u];
    }
    sum_p[lid.x] = acc_p;
    sum_g[lid.x] = acc_g;
    tree(lid.x);
    if lid.x == 0u {
        let p_norm = sqrt(sum_p[0]);
        let g_norm = sqrt(sum_g[0]);
        let wd = p.weight_decay;
        if wd != 0.0 && p_norm != 0.0 && g_norm != 0.0 {
            factor[0] = p_norm / (g_norm + p_norm * wd + p.eps) * p.trust_coefficient;
            factor[1] = wd;
        } else {
            factor[0] = 1.0;
            factor[1] = 0.0;
        }
    }
}

@compute @workgroup_size(256)
fn step(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = (wid.y * nwg.x + wid.x) * 256u + lid.x;
    if i >= p.len {
        return;
    }
    let w = param[i];
    var d = (grad[i] + factor[1] * w) * factor[0];
    if p.momentum != 0.0 {
        var b = d;
        if p.first == 0u {
            b = p.momentum * buf[i] + (1.0 - p.dampening) * d;
        }
        buf[i] = b;
        if p.nesterov != 0u {
            d = d + p.momentum * b;
        } else {
            d = b;
        }
    }
    param[i] = w - p.lr * d;
}
