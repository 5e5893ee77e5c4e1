//! The framework: one master/worker protocol for both levels (design.md §2) — the job manager and its job
//! masters, each job master and its workers. The decisions are the core's ([`crate::core::workers`] on the master
//! side, [`crate::core::fence`] on the worker side); this module carries them over gRPC.
//!
//! - [`link`]: the worker side — heartbeats with a deadline, self-fencing at the deadline itself, stale and cancel
//!   verdicts, terminal status reports retried until acknowledged.
//! - [`host`]: the master side for masters hosted on an executor — routes messages by master id to each hosted
//!   master's bookkeeping and queues its events.
//! - [`dispatch`]: two-phase dispatch and worker placement, as a master calls them.

pub mod dispatch;
pub mod host;
pub mod link;

/// The most bytes of a progress text a master keeps.
pub const PROGRESS_MAX: usize = 256;

/// A progress text as kept: at most [`PROGRESS_MAX`] bytes, cut at a character boundary, control characters
/// replaced (it is shown on terminals).
pub fn progress_text(p: &str) -> String {
    let mut out = String::new();
    for c in p.chars() {
        if out.len() + c.len_utf8() > PROGRESS_MAX {
            break;
        }
        out.push(if c.is_control() { ' ' } else { c });
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn progress_text_is_bounded_and_printable() {
        assert_eq!(super::progress_text("412/800"), "412/800");
        assert_eq!(super::progress_text("a\nb\x1b[2J"), "a b [2J");
        let long = "é".repeat(200);
        let kept = super::progress_text(&long);
        assert!(kept.len() <= super::PROGRESS_MAX && kept.len() == 256);
        assert!(long.starts_with(&kept));
    }
}
