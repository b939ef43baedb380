//! Limits: the largest (and smallest) values the daemon accepts for counts
//! and sizes, each with the reason it is where it is.

use super::{InvalidInput, invalid};

/// Rotation below this size would rotate on nearly every line.
pub const MIN_LOG_MAX_BYTES: u64 = 1 << 10;
pub const MAX_LOG_MAX_BYTES: u64 = 1 << 40;
/// Most rotated files kept per log.
pub const MAX_LOG_MAX_FILES: u32 = 100;
/// A crash loop is stopped long before this; more is a typo.
pub const MAX_MAX_RESTARTS: u32 = 1_000_000;

/// Most history lines one StreamLogs request may ask for per log.
pub const MAX_LOG_HISTORY_LINES: u32 = 100_000;

/// Checks a log rotation size against [`MIN_LOG_MAX_BYTES`] ..=
/// [`MAX_LOG_MAX_BYTES`].
pub fn check_log_max_size(flag: &str, bytes: u64) -> Result<u64, InvalidInput> {
    if bytes < MIN_LOG_MAX_BYTES {
        return Err(invalid(format!(
            "{flag}: {bytes} bytes is below the 1K minimum (rotating more often would rotate \
             on nearly every line)"
        )));
    }
    if bytes > MAX_LOG_MAX_BYTES {
        return Err(invalid(format!(
            "{flag}: {bytes} bytes is above the 1T maximum"
        )));
    }
    Ok(bytes)
}
