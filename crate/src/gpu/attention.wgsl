// Grouped-query causal attention over many sequences packed into one batch. One workgroup per
// (token, query head): the token attends to the tokens of its own sequence up to itself
// (a block-diagonal causal mask); query head h reads KV head h / (n_heads / n_kv_heads).
// Keys go in chunks of 64 with an online softmax, so sequence length is not bounded.

struct Params {
    n_tokens: u32,
    n_heads: u32,
    n_kv_heads: u32,
    head_dim: u32, // at most 256
    scale: f32,    // 1 / sqrt(head_dim)
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read> seq_start: array<u32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

const WG: u32 = 64u;
const LOW: f32 = -3.0e38;

var<workgroup> qs: array<f32, 256>;
var<workgroup> probs: array<f32, 64>;
var<workgroup> red: array<f32, 64>;

@compute @workgroup_size(64)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let g = wg.x + wg.y * nwg.x;
    let t = g / p.n_heads;
    if (t >= p.n_tokens) {
        return;
    }
    let h = g % p.n_heads;
    let kvh = h / (p.n_heads / p.n_kv_heads);
    let hd = p.head_dim;
    let q_at = t * p.n_heads * hd + h * hd;
    for (var i = li; i < hd; i += WG) {
        qs[i] = q[q_at + i];
    }
    workgroupBarrier();
    let s0 = seq_start[t];
    let n_keys = t - s0 + 1u;
    let kv_stride = p.n_kv_heads * hd;
    var m = LOW;
    var l = 0.0;
    var acc: array<f32, 4>;
    for (var c0 = 0u; c0 < n_keys; c0 += WG) {
        let j = c0 + li;
        var score = LOW;
        if (j < n_keys) {
            let k_at = (s0 + j) * kv_stride + kvh * hd;
            var dot = 0.0;
            for (var i = 0u; i < hd; i++) {
                dot += qs[i] * k[k_at + i];
            }
            score = dot * p.scale;
        }
        red[li] = score;
        workgroupBarrier();
        for (var n = WG / 2u; n > 0u; n >>= 1u) {
            if (li < n) {
                red[li] = max(red[li], red[li + n]);
            }
            workgroupBarrier();
        }
        let m_new = max(m, red[0]);
        let alpha = exp(m - m_new);
        let pj = select(0.0, exp(score - m_new), j < n_keys);
        workgroupBarrier();
        probs[li] = pj;
        red[li] = pj;
        workgroupBarrier();
        for (var n = WG / 2u; n > 0u; n >>= 1u) {
            if (li < n) {
                red[li] += red[li + n];
            }
            workgroupBarrier();
        }
        l = l * alpha + red[0];
        m = m_new;
        let chunk = min(WG, n_keys - c0);
        for (var r = 0u; r < 4u; r++) {
            let dd = li + WG * r;
            if (dd < hd) {
                var s = 0.0;
                for (var jj = 0u; jj < chunk; jj++) {
                    s += probs[jj] * v[(s0 + c0 + jj) * kv_stride + kvh * hd + dd];
                }
                acc[r] = acc[r] * alpha + s;
            }
        }
        workgroupBarrier();
    }
    for (var r = 0u; r < 4u; r++) {
        let dd = li + WG * r;
        if (dd < hd) {
            out[q_at + dd] = acc[r] / l;
        }
    }
}
