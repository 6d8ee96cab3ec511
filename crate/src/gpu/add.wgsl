// Residual add: x += y (a = x, b = y; see elementwise.wgsl).

fn apply(i: u32) {
    a[i] = a[i] + b[i];
}
