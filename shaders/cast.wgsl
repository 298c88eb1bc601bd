// cast: convert between f32 and f16 storage. Needs the SHADER_F16 feature; lim compiles this
// module only where the adapter offers it.
//
// f16 tensors are stored two halves per 32-bit word (little-endian, as the host writes them),
// so each invocation handles one word: two elements. An odd-sized tensor's last word carries
// a zero pad half.
//
// entry `f32_to_f16`: dst[w] = pack(f16(src[2w]), f16(src[2w + 1]))
//   bindings: 0 uniform Params, 1 src f32 (read), 2 dst f16 pairs (read_write); workgroup 256
// entry `f16_to_f32`: dst[2w], dst[2w + 1] = f32(src[w].x), f32(src[w].y)
//   bindings: 0 uniform Params, 3 src f16 pairs (read), 4 dst f32 (read_write); workgroup 256
//   word w = (wid.y * num_workgroups.x + wid.x) * 256 + lid.x, for both entries

enable f16;

struct Params {
    len: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src32: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst16: array<vec2<f16>>;
@group(0) @binding(3) var<storage, read> src16: array<vec2<f16>>;
@group(0) @binding(4) var<storage, read_write> dst32: array<f32>;

fn word(wid: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> u32 {
    return (wid.y * nwg.x + wid.x) * 256u + lid.x;
}

@compute @workgroup_size(256)
fn f32_to_f16(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_id) lid: vec3<u32>) {
    let w = word(wid, nwg, lid);
    let i = 2u * w;
    if i >= p.len {
        return;
    }
    var hi = 0.0h;
    if i + 1u < p.len {
        hi = f16(src32[i + 1u]);
    }
    dst16[w] = vec2<f16>(f16(src32[i]), hi);
}

@compute @workgroup_size(256)
fn f16_to_f32(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_id) lid: vec3<u32>) {
    let w = word(wid, nwg, lid);
    let i = 2u * w;
    if i >= p.len {
        return;
    }
    let pair = src16[w];
    dst32[i] = f32(pair.x);
    if i + 1u < p.len {
        dst32[i + 1u] = f32(pair.y);
    }
}
