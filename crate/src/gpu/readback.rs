//! What a batch captures and how it comes back: the spans to average ([`CaptureSpan`]), the
//! captured vectors ([`Captured`]), and reading a buffer back to the host (map, wait, copy),
//! awaited the same way natively and in the browser.

use std::future::Future;
use std::ops::Range;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use super::device::lock;
use super::GpuDevice;
use crate::error::{Error, Result};

/// One capture: the mean over `rows` (token positions) of sequence `seq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureSpan {
    pub seq: usize,
    pub rows: Range<usize>,
}

/// Captured residual-stream vectors, `[layer 0..=L][capture][d_model]`.
#[derive(Debug, Clone)]
pub struct Captured {
    /// Blocks L; there are L + 1 layers (0 = embedding output).
    pub n_layers: usize,
    pub n: usize,
    pub d_model: usize,
    pub data: Vec<f32>,
}

impl Captured {
    pub fn vector(&self, layer: usize, i: usize) -> &[f32] {
        let at = (layer * self.n + i) * self.d_model;
        &self.data[at..at + self.d_model]
    }
}

/// A one-shot channel as a future: wgpu's map callback sends, the reader awaits. Natively the
/// device is polled right after mapping, so the value is there by the first poll; in the
/// browser the event loop delivers it.
struct OneShot<T> {
    slot: Arc<Mutex<(Option<T>, Option<Waker>)>>,
}

impl<T> Future for OneShot<T> {
    type Output = T;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let mut s = lock(&self.slot);
        match s.0.take() {
            Some(v) => Poll::Ready(v),
            None => {
                s.1 = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// The first `bytes` bytes of `buffer` (a `MAP_READ` buffer the submitted work copied into),
/// once the GPU is done.
pub(super) async fn read_back_bytes(
    gpu: &GpuDevice,
    buffer: &wgpu::Buffer,
    bytes: u64,
) -> Result<Vec<u8>> {
    let slot = Arc::new(Mutex::new((None, None::<Waker>)));
    let tx = slot.clone();
    let slice = buffer.slice(0..bytes);
    slice.map_async(wgpu::MapMode::Read, move |r| {
        let mut s = lock(&tx);
        s.0 = Some(r);
        if let Some(w) = s.1.take() {
            w.wake();
        }
    });
    #[cfg(not(target_arch = "wasm32"))]
    gpu.device
        .poll(wgpu::PollType::wait_indefinitely())
        .map_err(|e| Error::Gpu(format!("waiting for the GPU: {e}")))?;
    if let Err(e) = (OneShot { slot }).await {
        gpu.check()?; // a lost device says so
        return Err(Error::Gpu(format!("reading results back failed: {e}")));
    }
    let out = {
        let view = slice
            .get_mapped_range()
            .map_err(|e| Error::Gpu(format!("reading results back failed: {e}")))?;
        view.to_vec()
    };
    buffer.unmap();
    gpu.check()?;
    Ok(out)
}

/// [`read_back_bytes`] as little-endian f32s.
pub(super) async fn read_back(
    gpu: &GpuDevice,
    buffer: &wgpu::Buffer,
    bytes: u64,
) -> Result<Vec<f32>> {
    let raw = read_back_bytes(gpu, buffer, bytes).await?;
    Ok(raw
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}
