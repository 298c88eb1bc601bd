// optim: fused optimiser updates, in place, one invocation per parameter element.
//
// entry `adam`: torch.optim.Adam / AdamW (amsgrad off), step t:
//   g = grad + wd p                       (Adam's L2 weight decay, DECOUPLED = false)
//   p = p (1 - lr wd)                     (AdamW's decoupled weight decay, DECOUPLED = true)
//   m = m + (1 - beta1) (g - m);  v = beta2 v + (1 - beta2) g g
//   p = p - lr / (1 - beta1^t) m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
//   bindings: 0 uniform Params, 1 grad (read), 2 p, 3 m, 4 v (read_write)
//   workgroup: 256; element = (wid.y * num_workgroups.x + wid.x) * 256 + lid.x

struct Params {
    len: u32,
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    weight_decay: f32,
    // 1 - beta1^t and sqrt(1 - beta2^t), computed on the host in f64
    correction1: f32,
    correction2_sqrt: f32,
}

override DECOUPLED: bool = false;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> grad: array<f32>;
@group(0) @binding(2) var<storage, read_write> param: array<f32>;
@group(0) @binding(3) var<storage, read_write> m: array<f32>;
@group(0) @binding(4) var<storage, read_write> v: array<f32>;

@compute @workgroup_size(256)
fn adam(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = (wid.y * nwg.x + wid.x) * 256u + lid.x;
    if i >= p.len {
        return;
    }
    var g = grad[i];
    var w = param[i];
    if DECOUPLED {
        w = w * (1.0 - p.lr * p.weight_decay);
    } else {
        g = g + p.weight_decay * w;
    }
    let mi = m[i] + (1.0 - p.beta1) * (g - m[i]);
    let vi = p.beta2 * v[i] + (1.0 - p.beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    let denom = sqrt(vi) / p.correction2_sqrt + p.eps;
    param[i] = w - (p.lr / p.correction1) * mi / denom;
}
