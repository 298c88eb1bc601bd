// augment: SwAV's multi-crop views of grey slices, torchvision's RandomResizedCrop ->
// ColorJitter (brightness, contrast) -> Gaussian blur -> Normalize, for a wave of crops of
// one output size S. The geometry and every random factor come from the host, per crop.
//
// Sources are grey images of 16-bit values (8-bit ones scaled by 257), two pixels per u32
// word, the lower half first; each crop names where its image starts (`src`, in pixels,
// within the bound window of sources).
//
// entry `resize`: a[c][y][x] = the crop box of the source resized to S x S with Pillow's
//   BILINEAR filter, which widens with the scale when it shrinks (antialiasing): for each
//   axis, scale = box / S, support = max(scale, 1), centre = (o + 0.5) scale, taps from
//   int(centre - support + 0.5) to int(centre + support + 0.5) clamped to the box, weights
//   max(0, 1 - |t - centre + 0.5| / support) normalised per axis. Values in [0, 1].
//   bindings: 0 uniform Params, 1 src (read), 2 crops (read), 3 a (read_write)
//   workgroup 64 over the pixels of a crop; crop = wid.y, pixel = wid.x * 64 + lid.x
// entry `mean`: means[c] = the mean of crop c after brightness, when brightness comes first
//   (contrast blends with the grey mean of the image as it is at that point).
//   bindings: 0, 2 crops, 3 a (read), 4 means (read_write); workgroup 64, one per crop
// entry `blur_rows`: tmp = jitter(a) blurred along x: jitter is brightness (v b) and
//   contrast (m + c (v - m)) in the crop's order, each clamped to [0, 1] (a factor of 1
//   leaves v); the blur is a Gaussian of standard deviation sigma over taps -r..r,
//   r = ceil(3 sigma), edges extended, weights normalised (sigma 0: no blur).
//   bindings: 0, 2 crops, 3 a (read), 4 means (read), 5 tmp (read_write); workgroup as resize
// entry `blur_columns`: the same blur along y, then (v - mean) / std written to every
//   channel of the crop's output row: out[out_base + (row c) C S S + ch S S + y S + x].
//   bindings: 0, 2 crops, 5 tmp (read), 6 out (read_write); workgroup as resize

struct Params {
    // S
    size: u32,
    crops: u32,
    channels: u32,
    // where the wave's first output row starts in the bound window of `out`
    out_base: u32,
    mean: f32,
    deviation: f32,
}

struct Crop {
    // first pixel of the source image in the bound window, its width and height
    src: u32,
    src_width: u32,
    src_height: u32,
    // the crop box in source pixels
    top: u32,
    left: u32,
    height: u32,
    width: u32,
    // this crop's row of the output, counted from the wave's first
    row: u32,
    brightness: f32,
    contrast: f32,
    // 1: contrast before brightness
    contrast_first: u32,
    sigma: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(2) var<storage, read> crops: array<Crop>;
@group(0) @binding(3) var<storage, read_write> a: array<f32>;
@group(0) @binding(4) var<storage, read_write> means: array<f32>;
@group(0) @binding(5) var<storage, read_write> tmp: array<f32>;
@group(0) @binding(6) var<storage, read_write> out: array<f32>;

const WG: u32 = 64u;

var<workgroup> partial: array<f32, WG>;

fn source(crop: Crop, y: u32, x: u32) -> f32 {
    let at = crop.src + y * crop.src_width + x;
    let word = src[at / 2u];
    return f32((word >> (16u * (at % 2u))) & 0xffffu) / 65535.0;
}

// Pillow's tap range along one axis: [first, end) of box coordinates.
fn taps(centre: f32, support: f32, len: u32) -> vec2<i32> {
    // i32() truncates toward zero, as Pillow's (int) cast.
    let first = max(i32(centre - support + 0.5), 0);
    let end = min(i32(centre + support + 0.5), i32(len));
    return vec2<i32>(first, end);
}

fn triangle(t: f32) -> f32 {
    return max(0.0, 1.0 - abs(t));
}

@compute @workgroup_size(64)
fn resize(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = wid.y;
    let pixel = wid.x * WG + lid.x;
    if c >= p.crops || pixel >= p.size * p.size {
        return;
    }
    let crop = crops[c];
    let oy = pixel / p.size;
    let ox = pixel % p.size;
    let scale = vec2<f32>(f32(crop.width), f32(crop.height)) / f32(p.size);
    let support = max(scale, vec2<f32>(1.0));
    let centre = (vec2<f32>(f32(ox), f32(oy)) + 0.5) * scale;
    let xs = taps(centre.x, support.x, crop.width);
    let ys = taps(centre.y, support.y, crop.height);
    var wx_total = 0.0;
    for (var x = xs.x; x < xs.y; x++) {
        wx_total += triangle((f32(x) - centre.x + 0.5) / support.x);
    }
    var acc = 0.0;
    var wy_total = 0.0;
    for (var y = ys.x; y < ys.y; y++) {
        let wy = triangle((f32(y) - centre.y + 0.5) / support.y);
        wy_total += wy;
        var row = 0.0;
        for (var x = xs.x; x < xs.y; x++) {
            let wx = triangle((f32(x) - centre.x + 0.5) / support.x);
            row += wx * source(crop, crop.top + u32(y), crop.left + u32(x));
        }
        acc += wy * row;
    }
    a[c * p.size * p.size + pixel] = acc / (wx_total * wy_total);
}

fn brightened(crop: Crop, v: f32) -> f32 {
    return clamp(v * crop.brightness, 0.0, 1.0);
}

@compute @workgroup_size(64)
fn mean(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
    let c = wid.x;
    if c >= p.crops {
        return;
    }
    let lid = lid3.x;
    let crop = crops[c];
    let area = p.size * p.size;
    var s = 0.0;
    for (var i = lid; i < area; i += WG) {
        var v = a[c * area + i];
        if crop.contrast_first == 0u {
            v = brightened(crop, v);
        }
        s += v;
    }
    partial[lid] = s;
    workgroupBarrier();
    for (var half = WG / 2u; half > 0u; half /= 2u) {
        if lid < half {
            partial[lid] += partial[lid + half];
        }
        workgroupBarrier();
    }
    if lid == 0u {
        means[c] = partial[0] / f32(area);
    }
}

fn contrasted(crop: Crop, m: f32, v: f32) -> f32 {
    return select(v, clamp(m + crop.contrast * (v - m), 0.0, 1.0), crop.contrast != 1.0);
}

fn jittered(crop: Crop, m: f32, v: f32) -> f32 {
    var x = v;
    if crop.contrast_first == 1u {
        x = contrasted(crop, m, x);
    }
    x = select(x, brightened(crop, x), crop.brightness != 1.0);
    if crop.contrast_first == 0u {
        x = contrasted(crop, m, x);
    }
    return x;
}

fn radius(sigma: f32) -> i32 {
    return i32(ceil(3.0 * sigma));
}

fn gauss(t: i32, sigma: f32) -> f32 {
    if sigma == 0.0 {
        return 1.0;
    }
    let d = f32(t) / sigma;
    return exp(-0.5 * d * d);
}

@compute @workgroup_size(64)
fn blur_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = wid.y;
    let pixel = wid.x * WG + lid.x;
    if c >= p.crops || pixel >= p.size * p.size {
        return;
    }
    let crop = crops[c];
    let m = means[c];
    let row = c * p.size * p.size + (pixel / p.size) * p.size;
    let x = i32(pixel % p.size);
    let r = radius(crop.sigma);
    var acc = 0.0;
    var total = 0.0;
    for (var t = -r; t <= r; t++) {
        let w = gauss(t, crop.sigma);
        let at = u32(clamp(x + t, 0, i32(p.size) - 1));
        acc += w * jittered(crop, m, a[row + at]);
        total += w;
    }
    tmp[c * p.size * p.size + pixel] = acc / total;
}

@compute @workgroup_size(64)
fn blur_columns(@builtin(workgroup_id) wid: vec3<u32>,
                @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = wid.y;
    let area = p.size * p.size;
    let pixel = wid.x * WG + lid.x;
    if c >= p.crops || pixel >= area {
        return;
    }
    let crop = crops[c];
    let y = i32(pixel / p.size);
    let x = pixel % p.size;
    let r = radius(crop.sigma);
    var acc = 0.0;
    var total = 0.0;
    for (var t = -r; t <= r; t++) {
        let w = gauss(t, crop.sigma);
        let at = u32(clamp(y + t, 0, i32(p.size) - 1));
        acc += w * tmp[c * area + at * p.size + x];
        total += w;
    }
    let v = (acc / total - p.mean) / p.deviation;
    let first = p.out_base + crop.row * p.channels * area + pixel;
    for (var ch = 0u; ch < p.channels; ch++) {
        out[first + ch * area] = v;
    }
}
