//! The browser shell (wasm-bindgen).
