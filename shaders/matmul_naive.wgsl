// matmul_naive: C[b] = op(A[b]) · op(B[b]), one output element per invocation.
// The simplest correct kernel: any shape, any transpose, no alignment needs. It is the
// fallback for shapes the faster variants cannot take and the baseline they are timed against.
//
// op(A) is [M, K]: A is stored [M, K], or [K, M] when TRANS_A. op(B) is [K, N]: B is stored
// [K, N], or [N, K] when TRANS_B. C is stored [M, N]. Batch strides are in elements; a stride
// of 0 broadcasts that operand over the batch.
//
// Operands: A and B are f32, or f16 where lim rewrites the `alias Operand` line (mixed
// precision); products and sums stay f32, and C is f32.
//
// entry `main`
//   bindings: 0 uniform Params, 1 A (read), 2 B (read), 3 C (read_write)
//   workgroup: 16 x 16 x 1; invocation (x, y, z) computes C[batch z][row y][col x], where
//   each coordinate adds the Params' first workgroup of this dispatch (grids wider than the
//   adapter's per-dimension limit are split over several dispatches).

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

@group(0) @binding(0) var<uniform> p: Params;
alias Operand = f32;

@group(0) @binding(1) var<storage, read> a: array<Operand>;
@group(0) @binding(2) var<storage, read> b: array<Operand>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

fn a_at(base: u32, row: u32, kk: u32) -> f32 {
    if TRANS_A {
        return f32(a[base + kk * p.m + row]);
    }
    return f32(a[base + row * p.k + kk]);
}

fn b_at(base: u32, kk: u32, col: u32) -> f32 {
    if TRANS_B {
        return f32(b[base + col * p.k + kk]);
    }
    return f32(b[base + kk * p.n + col]);
}

@compute @workgroup_size(16, 16, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let col = (wid.x + p.group0_x) * 16u + lid.x;
    let row = (wid.y + p.group0_y) * 16u + lid.y;
    let batch = wid.z + p.group0_z;
    if row >= p.m || col >= p.n {
        return;
    }
    let a_base = batch * p.stride_a;
    let b_base = batch * p.stride_b;
    var acc = 0.0;
    for (var kk = 0u; kk < p.k; kk++) {
        acc = fma(a_at(a_base, row, kk), b_at(b_base, kk, col), acc);
    }
    c[batch * p.stride_c + row * p.n + col] = acc;
}
