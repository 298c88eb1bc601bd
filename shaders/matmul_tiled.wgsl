// matmul_tiled: C[b] = op(A[b]) · op(B[b]) through workgroup shared memory, the classic GPU
// kernel. A workgroup stages a 64 x 16 slice of op(A) and a 16 x 64 slice of op(B) in shared
// memory, then each invocation accumulates a 4 x 4 block of outputs from it. On GPUs with
// fast shared memory this is the variant to beat; on lavapipe barriers are slow, so the
// autotuner usually passes it over there. Any shape, any transpose: tiles are zero-padded.
//
// Layouts, batch strides and the dispatch split are as in matmul_naive.wgsl.
//
// Operands: A and B are f32, or f16 where lim rewrites the `alias Operand` line (mixed
// precision); products and sums stay f32, and C is f32.
//
// entry `main`
//   bindings: 0 uniform Params, 1 A (read), 2 B (read), 3 C (read_write)
//   workgroup: 16 x 16 x 1; workgroup (x, y, z) computes rows 64y..64y+64 and columns
//   64x..64x+64 of C[batch z]; invocation (tx, ty) owns rows 64y + ty + 16i and columns
//   64x + tx + 16j for i, j in 0..4, so neighbouring invocations read neighbouring words.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    stride_a: u32,
    stride_b: u32,
    stride_c: u32,
    group0_x: u32,
    group0_y: u32,
    group0_z: u32,
}

override TRANS_A: bool = false;
override TRANS_B: bool = false;

const TILE: u32 = 64u;
const TILE_K: u32 = 16u;

@group(0) @binding(0) var<uniform> p: Params;
alias Operand = f32;

@group(0) @binding(1) var<storage, read> a: array<Operand>;
@group(0) @binding(2) var<storage, read> b: array<Operand>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

var<workgroup> a_tile: array<array<f32, TILE>, TILE_K>;
var<workgroup> b_tile: array<array<f32, TILE>, TILE_K>;

fn a_at(base: u32, row: u32, kk: u32) -> f32 {
    if row >= p.m || kk >= p.k {
        return 0.0;
    }
    if TRANS_A {
        return f32(a[base + kk * p.m + row]);
    }
    return f32(a[base + row * p.k + kk]);
}

fn b_at(base: u32, kk: u32, col: u32) -> f32 {
    if kk >= p.k || col >= p.n {
        return 0.0;
    }
    if TRANS_B {
        return f32(b[base + col * p.k + kk]);
    }
    return f32(b[base + kk * p.n + col]);
}

@compute @workgroup_size(16, 16, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let row0 = (wid.y + p.group0_y) * TILE;
    let col0 = (wid.x + p.group0_x) * TILE;
    let batch = wid.z + p.group0_z;
    let a_base = batch * p.stride_a;
    let b_base = batch * p.stride_b;
    let flat = lid.y * 16u + lid.x;

    var acc: array<array<f32, 4>, 4>;
    for (var k0 = 0u; k0 < p.k; k0 += TILE_K) {
        // 256 invocations stage 16 x 64 elements of each operand: 4 apiece.
        for (var e = 0u; e < 4u; e++) {
            let idx = flat + e * 256u;
            let kk = idx / TILE;
            let mn = idx % TILE;
            a_tile[kk][mn] = a_at(a_base, row0 + mn, k0 + kk);
            b_tile[kk][mn] = b_at(b_base, k0 + kk, col0 + mn);
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TILE_K; kk++) {
            var av: array<f32, 4>;
            var bv: array<f32, 4>;
            for (var i = 0u; i < 4u; i++) {
                av[i] = a_tile[kk][lid.y + 16u * i];
                bv[i] = b_tile[kk][lid.x + 16u * i];
            }
            for (var i = 0u; i < 4u; i++) {
                for (var j = 0u; j < 4u; j++) {
                    acc[i][j] = fma(av[i], bv[j], acc[i][j]);
                }
            }
        }
        workgroupBarrier();
    }

    let c_base = batch * p.stride_c;
    for (var i = 0u; i < 4u; i++) {
        let row = row0 + lid.y + 16u * i;
        for (var j = 0u; j < 4u; j++) {
            let col = col0 + lid.x + 16u * j;
            if row < p.m && col < p.n {
                c[c_base + row * p.n + col] = acc[i][j];
            }
        }
    }
}
