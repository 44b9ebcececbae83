//! Per-stage sandbox limits, as data: the pipeline spec's `limits` object.

use serde::{Deserialize, Serialize};

/// What one stage may use. Every field has a safe default, so a spec may
/// give only the ones it changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct StageLimits {
    /// Fuel (roughly, wasm instructions) one event may burn.
    pub fuel: u64,
    /// The stage's linear memory cap, MiB.
    pub memory_mb: u32,
    /// Wall-clock time one event may take, ms (epoch interruption).
    pub timeout_ms: u32,
    /// Events one input may produce.
    pub max_outputs: u32,
    /// Bytes (id + type + source + data) one input's outputs may total.
    pub max_output_bytes: u32,
}

impl Default for StageLimits {
    fn default() -> Self {
        StageLimits {
            fuel: 10_000_000,
            memory_mb: 64,
            timeout_ms: 1_000,
            max_outputs: 1_000,
            max_output_bytes: 1 << 20,
        }
    }
}

/// Upper bounds on what a spec may ask for, so one stage can't take the host.
pub const MAX_MEMORY_MB: u32 = 1024;
pub const MAX_TIMEOUT_MS: u32 = 60_000;
pub const MAX_FUEL: u64 = 10_000_000_000;

impl StageLimits {
    /// Checks the limits are within what the host allows.
    pub fn validate(&self) -> Result<(), String> {
        if self.fuel == 0 || self.fuel > MAX_FUEL {
            return Err(format!("limits.fuel must be between 1 and {MAX_FUEL}, got {}", self.fuel));
        }
        if self.memory_mb == 0 || self.memory_mb > MAX_MEMORY_MB {
            return Err(format!("limits.memory_mb must be between 1 and {MAX_MEMORY_MB}, got {}", self.memory_mb));
        }
        if self.timeout_ms == 0 || self.timeout_ms > MAX_TIMEOUT_MS {
            return Err(format!("limits.timeout_ms must be between 1 and {MAX_TIMEOUT_MS}, got {}", self.timeout_ms));
        }
        if self.max_outputs == 0 {
            return Err("limits.max_outputs must be at least 1".into());
        }
        if self.max_output_bytes == 0 {
            return Err("limits.max_output_bytes must be at least 1".into());
        }
        Ok(())
    }

    pub(crate) fn memory_bytes(&self) -> usize {
        self.memory_mb as usize * 1024 * 1024
    }
}
