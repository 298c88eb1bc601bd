// matmul_reg: C[b] = op(A[b]) · op(B[b]), register-blocked with vec4 loads and no shared
// memory. Each invocation keeps a ROWS x (4 * COLS4) block of C in registers and walks K four
// at a time: per step it loads ROWS + 4 * COLS4 vec4s and does 16 * ROWS * COLS4 FMAs. Loads,
// not FMAs, are what costs on CPU-hosted drivers such as lavapipe (each one is a loop over
// SIMD lanes), and caches serve these loads well on GPUs; the autotuner picks ROWS and COLS4
// per adapter and shape class.
//
// ROWS (a multiple of 4) and COLS4 are specialisation constants: lim rewrites their `const`
// lines for each pipeline, so that every array has exactly the size its loop walks and the
// driver unrolls the loops (override-sized loops over larger arrays were 3x slower).
//
// Needs K % 4 == 0 and N % 4 == 0, and also M % 4 == 0 when TRANS_A; the other variants take
// every other shape. Layouts and batch strides (in elements, multiples of 4 here) are as in
// matmul_naive.wgsl.
//
// Operands: A and B are f32, or f16 where lim rewrites the `alias Operand4` line (mixed
// precision); products and sums stay f32, and C is f32.
//
// entry `main`
//   bindings: 0 uniform Params, 1 A as vec4 (read), 2 B as vec4 (read), 3 C as vec4 (read_write)
//   workgroup: 8 x 8 x 1; invocation (x, y) of workgroup (wx, wy, wz) computes rows
//   ROWS * (8 wy + y) .. + ROWS and vec4 column groups COLS4 * (8 wx + x) .. + COLS4 of C[batch wz]
//   (each coordinate offset by the Params' first workgroup of this dispatch).

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

const ROWS: u32 = 8u;
const COLS4: u32 = 2u;
const QUADS: u32 = ROWS / 4u;

override TRANS_A: bool = false;
override TRANS_B: bool = false;

@group(0) @binding(0) var<uniform> p: Params;
alias Operand4 = vec4<f32>;

@group(0) @binding(1) var<storage, read> a: array<Operand4>;
@group(0) @binding(2) var<storage, read> b: array<Operand4>;
@group(0) @binding(3) var<storage, read_write> c: array<vec4<f32>>;

@compute @workgroup_size(8, 8, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let k4s = p.k / 4u;
    let n4s = p.n / 4u;
    let m4s = p.m / 4u;
    let group0 = ((wid.x + p.group0_x) * 8u + lid.x) * COLS4;
    let row0 = ((wid.y + p.group0_y) * 8u + lid.y) * ROWS;
    let batch = wid.z + p.group0_z;
    if row0 >= p.m || group0 >= n4s {
        return;
    }
    let a_base = batch * (p.stride_a / 4u);
    let b_base = batch * (p.stride_b / 4u);

    // Rows and column groups past the edge load a clamped neighbour and are never stored.
    // acc[q][t][j] holds row 4 q + t, vec4 column group j.
    var acc: array<array<array<vec4<f32>, COLS4>, 4>, QUADS>;
    for (var k4 = 0u; k4 < k4s; k4++) {
        let b_blk = b_block(b_base, k4, k4s, n4s, group0);
        for (var q = 0u; q < QUADS; q++) {
            // rows[t] = op(A)[row0 + 4 q + t][4 k4 .. + 4]
            var rows: mat4x4<f32>;
            if TRANS_A {
                let quad = min(row0 / 4u + q, m4s - 1u);
                rows = transpose(mat4x4<f32>(
                    vec4<f32>(a[a_base + (4u * k4) * m4s + quad]),
                    vec4<f32>(a[a_base + (4u * k4 + 1u) * m4s + quad]),
                    vec4<f32>(a[a_base + (4u * k4 + 2u) * m4s + quad]),
                    vec4<f32>(a[a_base + (4u * k4 + 3u) * m4s + quad]),
                ));
            } else {
                for (var t = 0u; t < 4u; t++) {
                    rows[t] = vec4<f32>(a[a_base + min(row0 + 4u * q + t, p.m - 1u) * k4s + k4]);
                }
            }
            for (var t = 0u; t < 4u; t++) {
                for (var j = 0u; j < COLS4; j++) {
                    acc[q][t][j] = update(acc[q][t][j], rows[t], b_blk[0][j], b_blk[1][j], b_blk[2][j], b_blk[3][j]);
                }
            }
        }
    }

    let c_base = batch * (p.stride_c / 4u);
    for (var q = 0u; q < QUADS; q++) {
        for (var t = 0u; t < 4u; t++) {
            let row = row0 + 4u * q + t;
            for (var j = 0u; j < COLS4; j++) {
                if row < p.m && group0 + j < n4s {
                    c[c_base + row * n4s + group0 + j] = acc[q][t][j];
                }
            }
        }
    }
}
