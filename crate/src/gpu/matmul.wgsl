// y[t, col_offset + m] = sum_k x[t, k] * W[m, k] for one weight part, W read as GGUF blocks.
// A workgroup computes a 64-token x 64-row tile; the K axis goes in chunks of 32: a chunk of x
// and a dequantized chunk of W are staged in workgroup memory (16 KiB), then each of the 256
// invocations accumulates 4 x 4 outputs. `dequant8` is appended per quant type.

struct Params {
    n_tokens: u32,
    n_rows: u32,     // rows of this part (outputs)
    n_cols: u32,     // K, a multiple of 32
    row_bytes: u32,  // bytes of one row of blocks
    out_stride: u32, // row length of y (all rows of the whole tensor)
    col_offset: u32, // first output column of this part
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

const TILE: u32 = 64u;
const KC: u32 = 32u;

// Both tiles are stored k-major: [KC][TILE].
var<workgroup> xs: array<f32, 2048>;
var<workgroup> ws: array<f32, 2048>;

@compute @workgroup_size(16, 16)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let m0 = wg.x * TILE;
    let t0 = wg.y * TILE;
    // Loader role: tile row lr, 8 values from lk.
    let lr = li % TILE;
    let lk = (li / TILE) * 8u;
    // The tile's 16-token row groups that hold any token (uniform over the workgroup): a batch
    // of a few names skips the empty groups' products instead of computing all 64 rows.
    let groups = min(4u, (p.n_tokens - t0 + 15u) / 16u);
    var acc: array<f32, 16>;
    for (var k0 = 0u; k0 < p.n_cols; k0 += KC) {
        let t = t0 + lr;
        if (t < p.n_tokens) {
            let at = t * p.n_cols + k0 + lk;
            for (var i = 0u; i < 8u; i++) {
                xs[(lk + i) * TILE + lr] = x[at + i];
            }
        } else {
            for (var i = 0u; i < 8u; i++) {
                xs[(lk + i) * TILE + lr] = 0.0;
            }
        }
        let m = m0 + lr;
        if (m < p.n_rows) {
            let v = dequant8(m * p.row_bytes, k0 + lk);
            for (var i = 0u; i < 8u; i++) {
                ws[(lk + i) * TILE + lr] = v[i];
            }
        } else {
            for (var i = 0u; i < 8u; i++) {
                ws[(lk + i) * TILE + lr] = 0.0;
            }
        }
        workgroupBarrier();
        for (var kk = 0u; kk < KC; kk++) {
            var xv: array<f32, 4>;
            var wv: array<f32, 4>;
            for (var i = 0u; i < 4u; i++) {
                xv[i] = xs[kk * TILE + lid.y + 16u * i];
                wv[i] = ws[kk * TILE + lid.x + 16u * i];
            }
            for (var i = 0u; i < groups; i++) {
                for (var j = 0u; j < 4u; j++) {
                    acc[i * 4u + j] += xv[i] * wv[j];
                }
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < groups; i++) {
        let t = t0 + lid.y + 16u * i;
        for (var j = 0u; j < 4u; j++) {
            let m = m0 + lid.x + 16u * j;
            if (t < p.n_tokens && m < p.n_rows) {
                y[t * p.out_stride + p.col_offset + m] = acc[i * 4u + j];
            }
        }
    }
}
