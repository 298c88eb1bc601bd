// matmul_vec4: helpers shared by the vec4 kernels (matmul_reg, matmul_subgroup); lim appends
// this file to each of them. It uses their `b` binding, their TRANS_B override and their
// COLS4 constant.

// acc + av.x b0 + av.y b1 + av.z b2 + av.w b3: a row of A's block times B's 4 x 4 block.
fn update(acc: vec4<f32>, av: vec4<f32>, b0: vec4<f32>, b1: vec4<f32>, b2: vec4<f32>, b3: vec4<f32>) -> vec4<f32> {
    return fma(vec4(av.w), b3, fma(vec4(av.z), b2, fma(vec4(av.y), b1, fma(vec4(av.x), b0, acc))));
}

// block[i][j] = op(B)[4 k4 + i][4 (group0 + j) .. + 4], column groups clamped at the edge.
fn b_block(b_base: u32, k4: u32, k4s: u32, n4s: u32, group0: u32) -> array<array<vec4<f32>, COLS4>, 4> {
    var block: array<array<vec4<f32>, COLS4>, 4>;
    for (var j = 0u; j < COLS4; j++) {
        let g = min(group0 + j, n4s - 1u);
        if TRANS_B {
            let cols = transpose(mat4x4<f32>(
                vec4<f32>(b[b_base + (4u * g) * k4s + k4]),
                vec4<f32>(b[b_base + (4u * g + 1u) * k4s + k4]),
                vec4<f32>(b[b_base + (4u * g + 2u) * k4s + k4]),
                vec4<f32>(b[b_base + (4u * g + 3u) * k4s + k4]),
            ));
            for (var i = 0u; i < 4u; i++) {
                block[i][j] = cols[i];
            }
        } else {
            for (var i = 0u; i < 4u; i++) {
                block[i][j] = vec4<f32>(b[b_base + (4u * k4 + i) * n4s + g]);
            }
        }
    }
    return block;
}
