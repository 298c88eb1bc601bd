// matmul_subgroup: C[b] = op(A[b]) · op(B[b]), register-blocked like matmul_reg, with the
// lanes of a subgroup sharing their loads of A. All lanes of a subgroup need the same ROWS
// rows of op(A) but different columns of op(B), so each lane loads only ROWS / SG of the A
// vectors and receives the others by subgroupShuffle, which costs no memory traffic. On
// lavapipe, where every load is a loop over SIMD lanes, this triples throughput over
// matmul_reg; on GPUs it relieves the load units.
//
// ROWS, COLS4 and SG (the adapter's subgroup size: lim offers this kernel only where it is
// fixed, a power of two from 4 to 64) are specialisation constants, rewritten per pipeline as
// in matmul_reg.wgsl; ROWS is a multiple of 4, and ROWS % SG == 0 or SG % ROWS == 0. Shape
// needs and layouts are as in matmul_reg.wgsl (K % 4 == 0, N % 4 == 0, M % 4 == 0 when
// TRANS_A). No invocation returns early: every lane takes part in every shuffle, and only
// the stores are guarded.
//
// Operands: A and B are f32, or f16 where lim rewrites the `alias Operand4` line (mixed
// precision); products and sums stay f32, and C is f32.
//
// entry `main`
//   bindings: 0 uniform Params, 1 A as vec4 (read), 2 B as vec4 (read), 3 C as vec4 (read_write)
//   workgroup: 64 x 1 x 1, that is 64 / SG subgroups. Subgroup s of workgroup (wx, wy, wz)
//   computes rows ROWS * ((64 / SG) wy + s) .. + ROWS of C[batch wz]; its lane l computes vec4
//   column groups COLS4 * (SG wx + l) .. + COLS4 (each coordinate offset by the Params' first
//   workgroup of this dispatch).

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

const ROWS: u32 = 32u;
const COLS4: u32 = 2u;
const SG: u32 = 8u;
// Per step the subgroup loads ROWS vectors of A in GROUPS rounds of SG (lanes past ROWS
// repeat the last one); rows g * SG .. + SPAN come from round g.
const GROUPS: u32 = max(ROWS / SG, 1u);
const SPAN: u32 = min(ROWS, SG);

override TRANS_A: bool = false;
override TRANS_B: bool = false;

@group(0) @binding(0) var<uniform> p: Params;
alias Operand4 = vec4<f32>;

@group(0) @binding(1) var<storage, read> a: array<Operand4>;
@group(0) @binding(2) var<storage, read> b: array<Operand4>;
@group(0) @binding(3) var<storage, read_write> c: array<vec4<f32>>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(subgroup_id) subgroup: u32,
        @builtin(subgroup_invocation_id) lane: u32) {
    let k4s = p.k / 4u;
    let n4s = p.n / 4u;
    let m4s = p.m / 4u;
    let group0 = ((wid.x + p.group0_x) * SG + lane) * COLS4;
    let row0 = ((wid.y + p.group0_y) * (64u / SG) + subgroup) * ROWS;
    let batch = wid.z + p.group0_z;
    let a_base = batch * (p.stride_a / 4u);
    let b_base = batch * (p.stride_b / 4u);

    // acc[g][l][j] holds row g * SG + l, vec4 column group j.
    var acc: array<array<array<vec4<f32>, COLS4>, SPAN>, GROUPS>;
    for (var k4 = 0u; k4 < k4s; k4++) {
        // This lane's unit u of each round. Without TRANS_A: row u, k 4 k4 .. + 4. With
        // TRANS_A: rows 4 (u / 4) .. + 4 at k 4 k4 + u % 4, so the four k of a row sit in
        // four neighbouring lanes.
        var mine: array<vec4<f32>, GROUPS>;
        for (var g = 0u; g < GROUPS; g++) {
            let u = min(g * SG + lane, ROWS - 1u);
            if TRANS_A {
                let quad = min(row0 / 4u + u / 4u, m4s - 1u);
                mine[g] = vec4<f32>(a[a_base + (4u * k4 + u % 4u) * m4s + quad]);
            } else {
                mine[g] = vec4<f32>(a[a_base + min(row0 + u, p.m - 1u) * k4s + k4]);
            }
        }
        let b_blk = b_block(b_base, k4, k4s, n4s, group0);
        for (var g = 0u; g < GROUPS; g++) {
            for (var l = 0u; l < SPAN; l++) {
                var av: vec4<f32>;
                if TRANS_A {
                    for (var i = 0u; i < 4u; i++) {
                        av[i] = subgroupShuffle(mine[g][l % 4u], (l / 4u) * 4u + i);
                    }
                } else {
                    av = subgroupShuffle(mine[g], l);
                }
                for (var j = 0u; j < COLS4; j++) {
                    acc[g][l][j] = update(acc[g][l][j], av, b_blk[0][j], b_blk[1][j], b_blk[2][j], b_blk[3][j]);
                }
            }
        }
    }

    let c_base = batch * (p.stride_c / 4u);
    for (var g = 0u; g < GROUPS; g++) {
        for (var l = 0u; l < SPAN; l++) {
            let row = row0 + g * SG + l;
            for (var j = 0u; j < COLS4; j++) {
                if row < p.m && group0 + j < n4s {
                    c[c_base + row * n4s + group0 + j] = acc[g][l][j];
                }
            }
        }
    }
}
