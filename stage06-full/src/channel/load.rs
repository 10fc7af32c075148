//! A slot's load as the master sees it, for choosing a worker and for the
//! status lines.

use super::{Slot, SlotStatus};

impl Slot {
    /// The slot's load as the master counts it: what its worker last
    /// reported, plus what was sent since and what is queued.
    pub(super) fn status(&self) -> SlotStatus {
        let queued = self.queue.len();
        let Some(link) = self.link.as_ref() else {
            return SlotStatus {
                queued,
                ..SlotStatus::default()
            };
        };
        let in_flight = link.sent.saturating_sub(link.report.received);
        SlotStatus {
            ready: link.ready,
            live: u64::from(link.report.live) + in_flight + queued as u64,
            taken: link.report.taken + in_flight + queued as u64,
            queued,
            sent: link.sent,
            received: link.report.received,
        }
    }
}
