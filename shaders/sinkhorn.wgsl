// sinkhorn: SwAV's Sinkhorn-Knopp equal-partition codes of a [B, K] score matrix, in the log
// domain, in place on `l` (which starts as a copy of the scores).
//
// In exact arithmetic this is the paper's (and facebookresearch/swav's) algorithm:
//   Q = exp(s / eps)ᵀ; Q /= sum Q; repeat: { each prototype's row /= its sum, /= K;
//   each sample's column /= its sum, /= B }; rows of Qᵀ scaled to sum to 1.
// Here every normalisation subtracts a log-sum-exp instead of dividing by a sum (the global
// /= sum Q is absorbed by the first prototype normalisation), so no exp can overflow or turn
// a whole line into zeros: any finite scores give finite codes.
//
// entry `prototypes`: per prototype k (a column of l): l[., k] = v - lse(v) - ln K, where
//                     v = l[., k] * scale (scale = 1 / eps on the first pass, else 1)
// entry `samples`:    per sample b (a row of l): l[b, .] = v - lse(v) - ln B, or on the last
//                     pass exp(v - lse(v)), the codes (each row sums to 1)
//   bindings: 0 uniform Params, 1 l (read_write)
//
// Across devices (the batch split over ranks, as FB's `distributed_sinkhorn`), a prototype's
// log-sum-exp runs over every rank's samples, so `prototypes` is cut in two around the
// host's all-reduce of K values:
// entry `prototype_lse`:     lse[k] = lse(v) over this rank's samples (v as above)
// entry `prototype_shift`:   l[., k] = v - shift[k], shift[k] = the global lse + ln K
//   bindings: 0 uniform Params, 1 l, 2 lse (write) or 3 shift (read): K values
// workgroup: 64, one workgroup per line; line = wid.y * num_workgroups.x + wid.x. The 64
// invocations fold their strided elements into (max, sum) pairs, then combine the pairs in
// a tree in workgroup memory.

struct Params {
    // B
    samples: u32,
    // K
    prototypes: u32,
    scale: f32,
    // what is subtracted besides the log-sum-exp: ln K or ln B
    log_count: f32,
    // 1 on the last samples pass: write the codes
    last: u32,
}

const WG: u32 = 64u;
// A finite stand-in for -inf, so that max - max is never inf - inf.
const LOWEST: f32 = -3.0e38;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> l: array<f32>;
@group(0) @binding(2) var<storage, read_write> lse: array<f32>;
@group(0) @binding(3) var<storage, read> shift: array<f32>;

var<workgroup> wg_max: array<f32, WG>;
var<workgroup> wg_sum: array<f32, WG>;

// The log-sum-exp of `count` values v_i = l[start + i * stride] * scale, shared by the
// workgroup.
fn line_lse(lid: u32, start: u32, stride: u32, count: u32) -> f32 {
    var m = LOWEST;
    var s = 0.0;
    for (var i = lid; i < count; i += WG) {
        let v = l[start + i * stride] * p.scale;
        let top = max(m, v);
        s = s * exp(m - top) + exp(v - top);
        m = top;
    }
    wg_max[lid] = m;
    wg_sum[lid] = s;
    workgroupBarrier();
    for (var half = WG / 2u; half > 0u; half /= 2u) {
        if lid < half {
            let m2 = wg_max[lid + half];
            let top = max(wg_max[lid], m2);
            wg_sum[lid] = wg_sum[lid] * exp(wg_max[lid] - top) + wg_sum[lid + half] * exp(m2 - top);
            wg_max[lid] = top;
        }
        workgroupBarrier();
    }
    return wg_max[0] + log(wg_sum[0]);
}

// l[., k] = l[., k] * scale - by, the workgroup's invocations taking every WG-th sample.
fn shift_prototype(lid: u32, k: u32, by: f32) {
    for (var b = lid; b < p.samples; b += WG) {
        let at = b * p.prototypes + k;
        l[at] = l[at] * p.scale - by;
    }
}

@compute @workgroup_size(64)
fn prototypes(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_id) lid3: vec3<u32>) {
    let k = wid.y * nwg.x + wid.x;
    // Uniform per workgroup: the whole workgroup returns or none of it.
    if k >= p.prototypes {
        return;
    }
    let lid = lid3.x;
    shift_prototype(lid, k, line_lse(lid, k, p.prototypes, p.samples) + p.log_count);
}

@compute @workgroup_size(64)
fn prototype_lse(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_id) lid3: vec3<u32>) {
    let k = wid.y * nwg.x + wid.x;
    if k >= p.prototypes {
        return;
    }
    let total = line_lse(lid3.x, k, p.prototypes, p.samples);
    if lid3.x == 0u {
        lse[k] = total;
    }
}

@compute @workgroup_size(64)
fn prototype_shift(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_id) lid3: vec3<u32>) {
    let k = wid.y * nwg.x + wid.x;
    if k >= p.prototypes {
        return;
    }
    shift_prototype(lid3.x, k, shift[k]);
}

@compute @workgroup_size(64)
fn samples(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_id) lid3: vec3<u32>) {
    let b = wid.y * nwg.x + wid.x;
    if b >= p.samples {
        return;
    }
    let lid = lid3.x;
    let start = b * p.prototypes;
    let lse = line_lse(lid, start, 1u, p.prototypes);
    for (var k = lid; k < p.prototypes; k += WG) {
        let v = l[start + k] * p.scale - lse;
        if p.last == 1u {
            l[start + k] = exp(v);
        } else {
            l[start + k] = v - p.log_count;
        }
    }
}
