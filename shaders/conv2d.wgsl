// conv2d: 2-D convolution (cross-correlation, as PyTorch's), NCHW, groups = 1, and its
// gradients. x [N, C, H, W], w [O, C, KH, KW], out [N, O, OH, OW] with
// OH = (H + 2 pad_h - dil_h (KH - 1) - 1) / stride_h + 1 (likewise OW), and
//   out[n, o, p, q] = sum_{c, i, j} x[n, c, p s_h - pad_h + i d_h, q s_w - pad_w + j d_w] w[o, c, i, j]
// (x is 0 outside the image). Two routes, which the autotuner picks between per shape:
// direct loops, or im2col / col2im around lim's matmul (shaders/matmul_*.wgsl).
//
// entry `forward`: out, one invocation per output element, looping over c, i, j.
//   bindings: 0 uniform Params, 1 x (read), 2 w (read), 3 out (read_write)
// entry `backward_input`: dx [N, C, H, W] from g [N, O, OH, OW] (bound as x), one invocation
//   per input element: the sum over o, i, j of the outputs that read it.
//   bindings: 0 uniform Params, 1 g (read), 2 w (read), 3 dx (read_write)
// entry `backward_weight`: dw [O, C, KH, KW] from g (bound as w) and x, one invocation per
//   weight, looping over n, p, q.
//   bindings: 0 uniform Params, 1 x (read), 2 g (read), 3 dw (read_write)
// entry `im2col`: the columns of x for the GEMM route. Tap t = (c KH + i) KW + j of output
//   pixel p OW + q is the x that output multiplies with w[., c, i, j]; there are `taps` tap
//   rows, C KH KW rounded up to a multiple of 4 so that the GEMM's vec4 kernels apply, and
//   the extra rows are 0. `tap_major` 0: cols [N, taps, OH OW] (the forward's B, one matrix
//   per image); 1: cols [taps, N, OH OW] (the weight gradient's B, all images in one K).
//   Two layouts, autotuned per shape: `im2col_tiles`, one invocation per element in 8 x 8
//   tiles of the output plane (tile wid.x, tap wid.y, image wid.z), coalesced and with no
//   division per element, what a GPU wants; `im2col_rows`, one invocation per row of a tap
//   (wid.x * 64 + lid.x over taps and rows, image wid.z) looping over the row, so that
//   small planes fill whole workgroups and the divisions, which software adapters compute
//   lane by lane, are paid once a row.
//   bindings: 0 uniform Params, 1 x (read), 3 cols (read_write)
// entry `col2im`: dx[n, c, y, z] = sum of dcols[n, (c KH + i) KW + j, p OW + q] over the
//   (i, j, p, q) that read x[n, c, y, z], dcols being [N, taps, OH OW] (or [taps, N, OH OW]
//   when tap_major is 1): a gather, so no atomics. `col2im_tiles`: one invocation per input
//   element, in 8 x 8 tiles of the input plane (tile wid.x, channel wid.y, image wid.z);
//   `col2im_rows`: one per row of a channel (wid.x * 64 + lid.x over channels and rows,
//   image wid.z), as im2col's. bindings: 0 uniform Params, 1 dcols (read), 3 dx (read_write)
// entry `swap_batch_channels`: [N, O, OH OW] as [O, N, OH OW] (an output gradient as a
//   whole-batch product's operand), or back when tap_major is 1 (such a product's output as
//   images). One invocation per element. bindings: 0 uniform Params, 1 x (read),
//   3 out (read_write)
// entry `copy_columns`: a [O, cols_in] matrix as [O, cols_out], cut or padded with 0: the
//   weight to and its gradient from `taps` columns. One invocation per output element.
//   bindings: 0 uniform Params, 1 x (read), 3 out (read_write)
// workgroup: 256 (im2col and col2im: 8 x 8 tiles or 64 rows); element = (wid.y *
// num_workgroups.x + wid.x) * 256 + lid.x
//
// out is f32, or f16 where lim rewrites the `alias Operand` line: in mixed precision,
// im2col, swap_batch_channels and copy_columns write the GEMM's operands straight in f16.

struct Params {
    n: u32,
    c: u32,
    h: u32,
    w: u32,
    o: u32,
    kh: u32,
    kw: u32,
    oh: u32,
    ow: u32,
    stride_h: u32,
    stride_w: u32,
    pad_h: u32,
    pad_w: u32,
    dil_h: u32,
    dil_w: u32,
    total: u32,
    taps: u32,
    tap_major: u32,
    cols_in: u32,
    cols_out: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
alias Operand = f32;

@group(0) @binding(3) var<storage, read_write> out: array<Operand>;

fn element(wid: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> u32 {
    return (wid.y * nwg.x + wid.x) * 256u + lid.x;
}

// The input row or column that output position `out_pos` reads at kernel tap `tap`, or -1
// outside the image.
fn source(out_pos: u32, tap: u32, stride: u32, pad: u32, dil: u32, size: u32) -> i32 {
    let s = i32(out_pos * stride + tap * dil) - i32(pad);
    return select(-1, s, s >= 0 && s < i32(size));
}

// The output position that reads input position `pos` at kernel tap `tap`, or -1. (Stride 1
// skips the division, which software adapters compute lane by lane.)
fn reader(pos: u32, tap: u32, stride: u32, pad: u32, dil: u32, size: u32) -> i32 {
    var q = i32(pos + pad) - i32(tap * dil);
    if stride != 1u {
        if q < 0 || q % i32(stride) != 0 {
            return -1;
        }
        q /= i32(stride);
    }
    return select(-1, q, q >= 0 && q < i32(size));
}

@compute @workgroup_size(256)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_id) lid: vec3<u32>) {
    let e = element(wid, nwg, lid);
    if e >= p.total {
        return;
    }
    let q = e % p.ow;
    let row = (e / p.ow) % p.oh;
    let o = (e / (p.ow * p.oh)) % p.o;
    let n = e / (p.ow * p.oh * p.o);
    var acc = 0.0;
    for (var c = 0u; c < p.c; c++) {
        let x_base = (n * p.c + c) * p.h;
        let w_base = (o * p.c + c) * p.kh;
        for (var i = 0u; i < p.kh; i++) {
            let y = source(row, i, p.stride_h, p.pad_h, p.dil_h, p.h);
            if y < 0 {
                continue;
            }
            for (var j = 0u; j < p.kw; j++) {
                let z = source(q, j, p.stride_w, p.pad_w, p.dil_w, p.w);
                if z >= 0 {
                    acc += a[(x_base + u32(y)) * p.w + u32(z)] * b[(w_base + i) * p.kw + j];
                }
            }
        }
    }
    out[e] = Operand(acc);
}

@compute @workgroup_size(256)
fn backward_input(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_id) lid: vec3<u32>) {
    let e = element(wid, nwg, lid);
    if e >= p.total {
        return;
    }
    let z = e % p.w;
    let y = (e / p.w) % p.h;
    let c = (e / (p.w * p.h)) % p.c;
    let n = e / (p.w * p.h * p.c);
    var acc = 0.0;
    for (var i = 0u; i < p.kh; i++) {
        let row = reader(y, i, p.stride_h, p.pad_h, p.dil_h, p.oh);
        if row < 0 {
            continue;
        }
        for (var j = 0u; j < p.kw; j++) {
            let q = reader(z, j, p.stride_w, p.pad_w, p.dil_w, p.ow);
            if q < 0 {
                continue;
            }
            for (var o = 0u; o < p.o; o++) {
                let g = a[((n * p.o + o) * p.oh + u32(row)) * p.ow + u32(q)];
                acc += g * b[((o * p.c + c) * p.kh + i) * p.kw + j];
            }
        }
    }
    out[e] = Operand(acc);
}

@compute @workgroup_size(256)
fn backward_weight(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_id) lid: vec3<u32>) {
    let e = element(wid, nwg, lid);
    if e >= p.total {
        return;
    }
    let j = e % p.kw;
    let i = (e / p.kw) % p.kh;
    let c = (e / (p.kw * p.kh)) % p.c;
    let o = e / (p.kw * p.kh * p.c);
    var acc = 0.0;
    for (var n = 0u; n < p.n; n++) {
        for (var row = 0u; row < p.oh; row++) {
            let y = source(row, i, p.stride_h, p.pad_h, p.dil_h, p.h);
            if y < 0 {
                continue;
            }
            for (var q = 0u; q < p.ow; q++) {
                let z = source(q, j, p.stride_w, p.pad_w, p.dil_w, p.w);
                if z >= 0 {
                    let x = a[((n * p.c + c) * p.h + u32(y)) * p.w + u32(z)];
                    acc += x * b[((n * p.o + o) * p.oh + row) * p.ow + q];
                }
            }
        }
    }
    out[e] = Operand(acc);
}

// The column and row of a plane that invocation `lid` of tile `wid.x` covers: tiles of 8 x 8,
// `width` wide, in row-major order.
fn tile_position(wid: vec3<u32>, lid: vec3<u32>, width: u32) -> vec2<u32> {
    let tiles_w = (width + 7u) / 8u;
    return vec2<u32>((wid.x % tiles_w) * 8u + lid.x, (wid.x / tiles_w) * 8u + lid.y);
}

@compute @workgroup_size(8, 8)
fn im2col_tiles(@builtin(workgroup_id) wid: vec3<u32>,
                @builtin(local_invocation_id) lid: vec3<u32>) {
    let at = tile_position(wid, lid, p.ow);
    let q = at.x;
    let row = at.y;
    if q >= p.ow || row >= p.oh {
        return;
    }
    let t = wid.y;
    let n = wid.z;
    let e = column_row(n, t, row) + q;
    let j = t % p.kw;
    let i = (t / p.kw) % p.kh;
    let c = t / (p.kw * p.kh);
    var v = 0.0;
    if c < p.c {
        let y = source(row, i, p.stride_h, p.pad_h, p.dil_h, p.h);
        let z = source(q, j, p.stride_w, p.pad_w, p.dil_w, p.w);
        if y >= 0 && z >= 0 {
            v = a[((n * p.c + c) * p.h + u32(y)) * p.w + u32(z)];
        }
    }
    out[e] = Operand(v);
}

@compute @workgroup_size(8, 8)
fn col2im_tiles(@builtin(workgroup_id) wid: vec3<u32>,
                @builtin(local_invocation_id) lid: vec3<u32>) {
    let at = tile_position(wid, lid, p.w);
    let z = at.x;
    let y = at.y;
    if z >= p.w || y >= p.h {
        return;
    }
    let c = wid.y;
    let n = wid.z;
    var acc = 0.0;
    for (var i = 0u; i < p.kh; i++) {
        let row = reader(y, i, p.stride_h, p.pad_h, p.dil_h, p.oh);
        if row < 0 {
            continue;
        }
        for (var j = 0u; j < p.kw; j++) {
            let q = reader(z, j, p.stride_w, p.pad_w, p.dil_w, p.ow);
            if q >= 0 {
                acc += a[column_row(n, (c * p.kh + i) * p.kw + j, u32(row)) + u32(q)];
            }
        }
    }
    out[((n * p.c + c) * p.h + y) * p.w + z] = Operand(acc);
}

// The first element of tap t's row `row` of image n in the columns.
fn column_row(n: u32, t: u32, row: u32) -> u32 {
    let plane = p.oh * p.ow;
    if p.tap_major != 0u {
        return (t * p.n + n) * plane + row * p.ow;
    }
    return (n * p.taps + t) * plane + row * p.ow;
}

@compute @workgroup_size(64)
fn im2col_rows(@builtin(workgroup_id) wid: vec3<u32>,
               @builtin(local_invocation_id) lid: vec3<u32>) {
    let line = wid.x * 64u + lid.x;
    if line >= p.taps * p.oh {
        return;
    }
    let n = wid.z;
    let t = line / p.oh;
    let row = line % p.oh;
    let j = t % p.kw;
    let i = (t / p.kw) % p.kh;
    let c = t / (p.kw * p.kh);
    let first = column_row(n, t, row);
    let y = source(row, i, p.stride_h, p.pad_h, p.dil_h, p.h);
    let inside = c < p.c && y >= 0;
    let x_row = ((n * p.c + min(c, p.c - 1u)) * p.h + u32(max(y, 0))) * p.w;
    for (var q = 0u; q < p.ow; q++) {
        let z = source(q, j, p.stride_w, p.pad_w, p.dil_w, p.w);
        var v = 0.0;
        if inside && z >= 0 {
            v = a[x_row + u32(z)];
        }
        out[first + q] = Operand(v);
    }
}

@compute @workgroup_size(64)
fn col2im_rows(@builtin(workgroup_id) wid: vec3<u32>,
               @builtin(local_invocation_id) lid: vec3<u32>) {
    let line = wid.x * 64u + lid.x;
    if line >= p.c * p.h {
        return;
    }
    let n = wid.z;
    let c = line / p.h;
    let y = line % p.h;
    let out_row = ((n * p.c + c) * p.h + y) * p.w;
    for (var z = 0u; z < p.w; z++) {
        var acc = 0.0;
        for (var i = 0u; i < p.kh; i++) {
            let row = reader(y, i, p.stride_h, p.pad_h, p.dil_h, p.oh);
            if row < 0 {
                continue;
            }
            for (var j = 0u; j < p.kw; j++) {
                let q = reader(z, j, p.stride_w, p.pad_w, p.dil_w, p.ow);
                if q >= 0 {
                    acc += a[column_row(n, (c * p.kh + i) * p.kw + j, u32(row)) + u32(q)];
                }
            }
        }
        out[out_row + z] = Operand(acc);
    }
}

@compute @workgroup_size(256)
fn swap_batch_channels(@builtin(workgroup_id) wid: vec3<u32>,
                       @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_id) lid: vec3<u32>) {
    let e = element(wid, nwg, lid);
    if e >= p.total {
        return;
    }
    // The input is [outer, inner, plane], the output [inner, outer, plane].
    var outer = p.n;
    var inner = p.o;
    if p.tap_major != 0u {
        outer = p.o;
        inner = p.n;
    }
    let plane = p.oh * p.ow;
    let pixel = e % plane;
    let i = (e / plane) % outer;
    let j = e / (plane * outer);
    out[e] = Operand(a[(i * inner + j) * plane + pixel]);
}

@compute @workgroup_size(256)
fn copy_columns(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_id) lid: vec3<u32>) {
    let e = element(wid, nwg, lid);
    if e >= p.total {
        return;
    }
    let col = e % p.cols_out;
    let row = e / p.cols_out;
    var v = 0.0;
    if col < p.cols_in {
        v = a[row * p.cols_in + col];
    }
    out[e] = Operand(v);
}
