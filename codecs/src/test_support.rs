//! Helpers the protocol test modules share: hex literals in, events sorted out.

use crate::framing::RejectKind;
use crate::record::Record;
use crate::stream::StreamEvent;

/// Bytes from hex text; whitespace between digits is allowed.
pub(crate) fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

pub(crate) fn records(events: &[StreamEvent]) -> Vec<&Record> {
    events.iter().filter_map(|e| if let StreamEvent::Record(r) = e { Some(r) } else { None }).collect()
}

pub(crate) fn replies(events: &[StreamEvent]) -> Vec<Vec<u8>> {
    events.iter().filter_map(|e| if let StreamEvent::Reply(r) = e { Some(r.to_vec()) } else { None }).collect()
}

pub(crate) fn rejects(events: &[StreamEvent]) -> Vec<RejectKind> {
    events
        .iter()
        .filter_map(|e| if let StreamEvent::Rejected { reason, .. } = e { Some(reason.kind) } else { None })
        .collect()
}
