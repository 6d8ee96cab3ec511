//! The wgpu device: an adapter and a device with the adapter's full limits, what the adapter is
//! ([`AdapterReport`]), the limits the model checks its batches against, and the errors the
//! device reports outside any call (validation, out of memory, device loss) collected instead
//! of panicking.

use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};

/// What the adapter is, for logs and for choosing an engine.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AdapterReport {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    /// A software rasterizer (lavapipe, SwiftShader, WARP): correct but slower than the CPU path.
    pub is_fallback: bool,
    pub timestamp_queries: bool,
    pub max_storage_binding_bytes: u64,
}

impl std::fmt::Display for AdapterReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}, {}", self.name, self.backend, self.device_type)?;
        if self.is_fallback {
            write!(f, ", software fallback")?;
        }
        write!(f, ")")
    }
}

/// Errors the device reports outside any call (validation, out of memory), and device loss.
#[derive(Default)]
struct DeviceState {
    errors: Vec<String>,
    lost: Option<String>,
}

/// A GPU device and queue, with the errors it reports collected instead of panicking.
pub struct GpuDevice {
    pub(super) device: wgpu::Device,
    pub(super) queue: wgpu::Queue,
    pub(super) limits: wgpu::Limits,
    pub(super) report: AdapterReport,
    state: Arc<Mutex<DeviceState>>,
}

/// Locks `m`, taking the value over even if another holder panicked.
/// What the kernels need of an adapter: 256-thread workgroups, and storage bindings of at
/// least 64 MiB (larger weights are split to fit the binding size).
fn check_limits(limits: &wgpu::Limits) -> std::result::Result<(), String> {
    if limits.max_compute_invocations_per_workgroup < 256 {
        return Err(format!(
            "at most {} invocations per workgroup (need 256)",
            limits.max_compute_invocations_per_workgroup
        ));
    }
    if limits.max_storage_buffer_binding_size < 64 << 20 {
        return Err(format!(
            "storage bindings of at most {} bytes (need 64 MiB)",
            limits.max_storage_buffer_binding_size
        ));
    }
    Ok(())
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl GpuDevice {
    /// Requests an adapter (high performance first; `WGPU_BACKEND` and the other wgpu
    /// environment variables apply) and a device with the adapter's full limits.
    pub async fn new_async() -> Result<Self> {
        let instance =
            wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                ..Default::default()
            })
            .await
            .map_err(|e| Error::Gpu(format!("no GPU adapter: {e}")))?;
        let info = adapter.get_info();
        let limits = adapter.limits();
        check_limits(&limits).map_err(|why| Error::Gpu(format!("{}: {why}", info.name)))?;
        let timestamps = adapter.features().contains(wgpu::Features::TIMESTAMP_QUERY);
        let features = if timestamps {
            wgpu::Features::TIMESTAMP_QUERY
        } else {
            wgpu::Features::empty()
        };
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("probelab"),
                required_features: features,
                required_limits: limits.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| Error::Gpu(format!("the adapter '{}' gave no device: {e}", info.name)))?;
        let state = Arc::new(Mutex::new(DeviceState::default()));
        let s = state.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            lock(&s).errors.push(e.to_string());
        }));
        let s = state.clone();
        device.set_device_lost_callback(move |reason, message| {
            let why = if message.is_empty() {
                format!("{reason:?}")
            } else {
                format!("{reason:?}: {message}")
            };
            lock(&s).lost = Some(why);
        });
        let report = AdapterReport {
            name: info.name.clone(),
            backend: format!("{:?}", info.backend),
            device_type: format!("{:?}", info.device_type),
            driver: format!("{} {}", info.driver, info.driver_info)
                .trim()
                .to_string(),
            is_fallback: info.device_type == wgpu::DeviceType::Cpu,
            timestamp_queries: timestamps,
            max_storage_binding_bytes: limits.max_storage_buffer_binding_size,
        };
        Ok(Self {
            device,
            queue,
            limits,
            report,
            state,
        })
    }

    /// [`GpuDevice::new_async`], blocking.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new() -> Result<Self> {
        pollster::block_on(Self::new_async())
    }

    pub fn report(&self) -> &AdapterReport {
        &self.report
    }

    /// Destroys the device, as a driver reset would: for tests of the lost-device path.
    #[doc(hidden)]
    pub fn destroy_device_for_tests(&self) {
        self.device.destroy();
    }

    /// Errors the device reported since the last check, and device loss, as one error.
    pub(super) fn check(&self) -> Result<()> {
        let mut s = lock(&self.state);
        if let Some(lost) = &s.lost {
            return Err(Error::Gpu(format!("the GPU device was lost ({lost})")));
        }
        if !s.errors.is_empty() {
            let all = std::mem::take(&mut s.errors).join("; ");
            return Err(Error::Gpu(all));
        }
        Ok(())
    }

    /// Largest buffer one binding may see.
    pub(super) fn max_binding(&self) -> u64 {
        self.limits
            .max_storage_buffer_binding_size
            .min(self.limits.max_buffer_size)
    }

    /// Most workgroups along one side of a dispatch grid.
    pub(super) fn max_grid_side(&self) -> u32 {
        self.limits.max_compute_workgroups_per_dimension
    }
}
