//! What the gateway's process sets up for itself before it serves.

use crate::common::{Proc, TestEnv};

/// A line of the process's `/proc/<pid>/status`, e.g. `THP_enabled`.
fn status_field(proc: &Proc, field: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{}/status", proc.child.id())).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in the status of {}", proc.name))
        .trim()
        .to_owned()
}

/// Transparent huge pages are off in a gateway (the store's growth then
/// takes no compaction stalls, src/huge_pages.rs), unless the operator
/// sets mimalloc's own `MIMALLOC_ALLOW_THP`.
#[tokio::test]
async fn a_gateway_turns_huge_pages_off_unless_mimalloc_allow_thp_is_set() {
    let env = TestEnv::new();
    let default = env.gateway(&[]).await;
    let allowed = env.gateway(&[("MIMALLOC_ALLOW_THP", "1".into())]).await;
    assert_eq!(status_field(&default.proc, "THP_enabled"), "0");
    assert_eq!(status_field(&allowed.proc, "THP_enabled"), "1");
}
