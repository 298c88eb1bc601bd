// matmul_reg: C[b] = op(A[b]) · op(B[b]), register-blocked with vec4 loads and no shared
// memory. Each invocation keeps a ROWS x (4 * COLS4) block of C in registers and walks K four
// at a time: per step it loads ROWS + 4 * COLS4 vec4s and does 16 * ROWS * COLS4 FMAs. Loads,
// not FMAs, are what costs on CPU-hosted drivers such as lavapipe (each one is a loop over
// SIMD lanes), and caches serve these loads well on GPUs; the autotuner picks ROWS and COLS4
// per adapter and shape class.
//
// Needs K % 4 == 0 and N % 4 == 0, and also M % 4 == 0 and ROWS % 4 == 0 when TRANS_A; the
// other variants take every other shape. Layouts and batch strides (in elements, multiples
// of 4 here) are as in matmul_naive.wgsl.
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

override TRANS_A: bool = false;
override TRANS_B: bool = false;
// At most 32 rows and 4 column groups, and ROWS * COLS4 <= 32 (the size of the accumulator).
override ROWS: u32 = 8u;
override COLS4: u32 = 2u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b: array<vec4<f32>>;
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
    var acc: array<vec4<f32>, 32>;
    for (var k4 = 0u; k4 < k4s; k4++) {
        // a_blk[r][i] = op(A)[row0 + r][4 k4 + i]
        var a_blk: array<vec4<f32>, 32>;
        if TRANS_A {
            for (var i = 0u; i < 4u; i++) {
                for (var g = 0u; g < ROWS / 4u; g++) {
                    let rows = a[a_base + (4u * k4 + i) * m4s + min(row0 / 4u + g, m4s - 1u)];
                    a_blk[4u * g][i] = rows.x;
                    a_blk[4u * g + 1u][i] = rows.y;
                    a_blk[4u * g + 2u][i] = rows.z;
                    a_blk[4u * g + 3u][i] = rows.w;
                }
            }
        } else {
            for (var r = 0u; r < ROWS; r++) {
                a_blk[r] = a[a_base + min(row0 + r, p.m - 1u) * k4s + k4];
            }
        }
        // b_blk[i * COLS4 + j] = op(B)[4 k4 + i][4 (group0 + j) .. + 4]
        var b_blk: array<vec4<f32>, 16>;
        for (var j = 0u; j < COLS4; j++) {
            let g = min(group0 + j, n4s - 1u);
            if TRANS_B {
                let cols = transpose(mat4x4<f32>(
                    b[b_base + (4u * g) * k4s + k4],
                    b[b_base + (4u * g + 1u) * k4s + k4],
                    b[b_base + (4u * g + 2u) * k4s + k4],
                    b[b_base + (4u * g + 3u) * k4s + k4],
                ));
                for (var i = 0u; i < 4u; i++) {
                    b_blk[i * COLS4 + j] = cols[i];
                }
            } else {
                for (var i = 0u; i < 4u; i++) {
                    b_blk[i * COLS4 + j] = b[b_base + (4u * k4 + i) * n4s + g];
                }
            }
        }
        for (var r = 0u; r < ROWS; r++) {
            let av = a_blk[r];
            for (var j = 0u; j < COLS4; j++) {
                var s = acc[r * COLS4 + j];
                s = fma(vec4(av.x), b_blk[j], s);
                s = fma(vec4(av.y), b_blk[COLS4 + j], s);
                s = fma(vec4(av.z), b_blk[2u * COLS4 + j], s);
                acc[r * COLS4 + j] = fma(vec4(av.w), b_blk[3u * COLS4 + j], s);
            }
        }
    }

    let c_base = batch * (p.stride_c / 4u);
    for (var r = 0u; r < ROWS; r++) {
        let row = row0 + r;
        for (var j = 0u; j < COLS4; j++) {
            if row < p.m && group0 + j < n4s {
                c[c_base + row * n4s + group0 + j] = acc[r * COLS4 + j];
            }
        }
    }
}
