// SwiGLU: gate = silu(gate) * up, in place (silu(x) = x / (1 + exp(-x)), as candle;
// a = gate, b = up; see elementwise.wgsl).

fn apply(i: u32) {
    let g = a[i];
    a[i] = g / (1.0 + exp(-g)) * b[i];
}
