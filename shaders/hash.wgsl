// hash: Pillow's 8-bit LANCZOS resize of a batch of greyscale images, exact (integer
// arithmetic, 22-bit fixed-point weights computed on the host as Pillow computes them), and
// the low-frequency DCT that pHash compares against its median. The bits themselves are set
// on the host from what these kernels write.
//
// Images are bytes packed four to a u32, each at a word-aligned offset with a word-aligned
// row stride. All images of one dispatch have the same size.
//
// entry `horizontal`: mid[image][row][x] = clip8(2^21 + sum_t pixel[row][xmin_x + t] * w_x[t]),
//   for the rows the vertical pass reads (row0 ..). Weights are laid out per output column
//   and per word of the row (zeros outside the window), so a word of pixels meets a vec4 of
//   weights.
//   bindings: 0 uniform Params, 1 pixels (read), 2 layouts (read), 3 h_words (read),
//   4 h_weights (read), 5 mid (read_write)
//   workgroup: 64; invocation = (image * rows + row) * out_w + x, over a 2-D grid
// entry `vertical`: small[image][y][x] = clip8(2^21 + sum_t mid[image][ymin_y + t - row0][x] * v_y[t])
//   bindings: 0 uniform Params, 5 mid (read), 6 v_bounds (read), 7 v_weights (read),
//   8 small (read_write)
//   workgroup: 64; invocation = (image * out_h + y) * out_w + x
// entry `dct_rows`: t[image][k][j] = sum_i C[k][i] small[image][i][j]   (f32)
//   bindings: 0 uniform Params, 8 small (read), 9 cosines (read), 10 t (read_write)
//   workgroup: 64; invocation = (image * n + k) * out_w + j
// entry `dct_cols`: low[image][k][l] = sum_j t[image][k][j] C[l][j]   (f32)
//   bindings: 0 uniform Params, 9 cosines (read), 10 t (read), 11 low (read_write)
//   workgroup: 64; invocation = (image * n + k) * n + l
// Where Pillow resizes only one axis, the host sets the other axis's weights to the identity.

struct Params {
    count: u32,
    out_w: u32,
    out_h: u32,
    // first input row the vertical pass reads, and how many rows from there
    row0: u32,
    rows: u32,
    // words per output column in h_weights
    words: u32,
    // longest vertical window
    v_taps: u32,
    // pHash: low frequencies kept per axis
    n: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> pixels: array<u32>;
// per image: byte offset, row stride in bytes (both multiples of 4)
@group(0) @binding(2) var<storage, read> layouts: array<vec2<u32>>;
// per output column: first word of its window, number of words
@group(0) @binding(3) var<storage, read> h_words: array<vec2<u32>>;
@group(0) @binding(4) var<storage, read> h_weights: array<vec4<i32>>;
@group(0) @binding(5) var<storage, read_write> mid: array<u32>;
// per output row: first input row, window length
@group(0) @binding(6) var<storage, read> v_bounds: array<vec2<u32>>;
@group(0) @binding(7) var<storage, read> v_weights: array<i32>;
@group(0) @binding(8) var<storage, read_write> small: array<u32>;
@group(0) @binding(9) var<storage, read> cosines: array<f32>;
@group(0) @binding(10) var<storage, read_write> t: array<f32>;
@group(0) @binding(11) var<storage, read_write> low: array<f32>;

const HALF: i32 = 1 << 21;

fn clip8(acc: i32) -> u32 {
    return u32(clamp(acc >> 22u, 0, 255));
}

fn invocation(wid: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> u32 {
    return (wid.y * nwg.x + wid.x) * 64u + lid.x;
}

@compute @workgroup_size(64)
fn horizontal(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_id) lid: vec3<u32>) {
    let id = invocation(wid, nwg, lid);
    if id >= p.count * p.rows * p.out_w {
        return;
    }
    let x = id % p.out_w;
    let row = (id / p.out_w) % p.rows;
    let image = id / (p.out_w * p.rows);
    let place = layouts[image];
    let row_word = (place.x + (p.row0 + row) * place.y) / 4u;
    let window = h_words[x];
    var acc = HALF;
    for (var w = window.x; w < window.x + window.y; w++) {
        let word = pixels[row_word + w];
        let bytes = vec4<i32>(vec4<u32>(word, word >> 8u, word >> 16u, word >> 24u) & vec4<u32>(255u));
        let weights = h_weights[x * p.words + w];
        acc += dot(bytes, weights);
    }
    mid[id] = clip8(acc);
}

@compute @workgroup_size(64)
fn vertical(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_id) lid: vec3<u32>) {
    let id = invocation(wid, nwg, lid);
    if id >= p.count * p.out_h * p.out_w {
        return;
    }
    let x = id % p.out_w;
    let y = (id / p.out_w) % p.out_h;
    let image = id / (p.out_w * p.out_h);
    let bounds = v_bounds[y];
    let base = image * p.rows * p.out_w + (bounds.x - p.row0) * p.out_w + x;
    var acc = HALF;
    for (var k = 0u; k < bounds.y; k++) {
        acc += i32(mid[base + k * p.out_w]) * v_weights[y * p.v_taps + k];
    }
    small[id] = clip8(acc);
}

@compute @workgroup_size(64)
fn dct_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_id) lid: vec3<u32>) {
    let id = invocation(wid, nwg, lid);
    let size = p.out_w;
    if id >= p.count * p.n * size {
        return;
    }
    let j = id % size;
    let k = (id / size) % p.n;
    let image = id / (size * p.n);
    var acc = 0.0;
    for (var i = 0u; i < size; i++) {
        acc += cosines[k * size + i] * f32(small[(image * size + i) * size + j]);
    }
    t[id] = acc;
}

@compute @workgroup_size(64)
fn dct_cols(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_id) lid: vec3<u32>) {
    let id = invocation(wid, nwg, lid);
    let size = p.out_w;
    if id >= p.count * p.n * p.n {
        return;
    }
    let l = id % p.n;
    let k = (id / p.n) % p.n;
    let image = id / (p.n * p.n);
    var acc = 0.0;
    for (var j = 0u; j < size; j++) {
        acc += t[(image * p.n + k) * size + j] * cosines[l * size + j];
    }
    low[id] = acc;
}
