//! Transparent huge pages, turned off for the gateway's process.
//!
//! mimalloc asks the kernel for huge pages on the memory it maps, and where
//! the kernel then compacts memory to find one (`defrag` set to `madvise`,
//! Debian's default) the first touch of fresh memory can take milliseconds.
//! The status store takes fresh memory all through a gateway's first
//! minutes, on the runtime thread that serves every request: filling a
//! store (of 8 shards, as it was) with a million results, the longest
//! single result took 74-86 ms with huge pages and 10-11 ms without; with
//! the store's 1,024 shards now, 8.9-9.2 ms and 3.4-3.9 ms (`cargo run
//! --release -p gateway --example store_memory`; docs/benchmarks.md, "The
//! store grew in stalls").

/// Turns transparent huge pages off for this process, unless
/// `MIMALLOC_ALLOW_THP` is set (then mimalloc decides, as it documents).
/// Whether they are off because of this call.
pub fn turn_off() -> std::io::Result<bool> {
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_some() {
        return Ok(false);
    }
    #[cfg(target_os = "linux")]
    {
        nix::sys::prctl::set_thp_disable(true)?;
        Ok(true)
    }
    #[cfg(not(target_os = "linux"))]
    Ok(false)
}
