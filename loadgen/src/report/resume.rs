//! What resume mode (`--resume`) measured: the connections the broker closed during the run and
//! how they came back, and whether their rooms' streams stayed whole.
//!
//! Owns: the `ResumeReport` a worker sends, its merge over workers, and its line in the summary.

use serde::{Deserialize, Serialize};

/// One worker's (or, merged, the whole run's) resume figures.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct ResumeReport {
    /// Connections opened again after the broker closed them.
    pub reconnects: u64,
    /// Attempts that failed before one succeeded (refused, 502 from a load balancer).
    pub failed_attempts: u64,
    /// The longest a connection was away: from its end to its next open, in ms.
    pub longest_away_ms: u64,
    /// Reconnects with no place in the stream yet (nothing seen): a plain join, not a resume.
    pub unplaced: u64,
    /// `recovered:false` answers and hole notices (`joined` with `recovered:false`), but for
    /// `interrupted`.
    pub not_recovered: u64,
    /// `interrupted` answers and notices (Redis away): the client keeps its place, and resumes
    /// again on a notice. No loss: a hole would show as a gap.
    #[serde(default)]
    pub interrupted: u64,
    /// Seqs skipped within one epoch: messages a member never got.
    pub gaps: u64,
    /// Chats refused `unavailable` (kept and sent again).
    pub refused: u64,
    /// Chats sent again with their id (after a reconnect, a refusal, or no ack for 2 s).
    pub resent: u64,
    /// Chats still without an ack when the worker reported.
    pub unacked: u64,
    /// Error frames other than `unavailable`.
    pub errors: u64,
}

impl ResumeReport {
    /// Whether the streams stayed whole and every chat was acked.
    pub fn is_clean(&self) -> bool {
        self.not_recovered + self.gaps + self.unacked + self.errors == 0
    }

    /// One line for the summary table.
    pub fn line(&self) -> String {
        format!(
            "resume        {} reconnects ({} failed attempts, {} without a place), longest away \
             {} ms; {} not recovered ({} interrupted, kept their place), {} gaps; {} refused, {} resent, {} unacked, {} errors",
            self.reconnects,
            self.failed_attempts,
            self.unplaced,
            self.longest_away_ms,
            self.not_recovered,
            self.interrupted,
            self.gaps,
            self.refused,
            self.resent,
            self.unacked,
            self.errors
        )
    }
}

/// The workers' resume figures added up (the longest absence is the longest of any).
pub fn merge(reports: &[&ResumeReport]) -> Option<ResumeReport> {
    if reports.is_empty() {
        return None;
    }
    let sum = |field: fn(&ResumeReport) -> u64| reports.iter().map(|r| field(r)).sum::<u64>();
    Some(ResumeReport {
        reconnects: sum(|r| r.reconnects),
        failed_attempts: sum(|r| r.failed_attempts),
        longest_away_ms: reports.iter().map(|r| r.longest_away_ms).max().unwrap_or(0),
        unplaced: sum(|r| r.unplaced),
        not_recovered: sum(|r| r.not_recovered),
        interrupted: sum(|r| r.interrupted),
        gaps: sum(|r| r.gaps),
        refused: sum(|r| r.refused),
        resent: sum(|r| r.resent),
        unacked: sum(|r| r.unacked),
        errors: sum(|r| r.errors),
    })
}
