//! Why a connection or UDP peer ended: the vocabulary the session, the server and the
//! metrics share. A leaf, so the metrics need not depend on the session.

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The device closed the connection.
    Eof,
    /// Nothing heard for the idle timeout.
    Idle,
    /// A frame begun was not finished within the frame timeout.
    FrameTimeout,
    /// Only rejected bytes from a peer that never produced a record.
    Junk,
    /// The same device logged in again on another connection.
    Takeover,
    /// A read or write failed.
    Error,
    /// The sink refused records: nothing more could be acknowledged.
    SinkFailed,
    /// The gateway is shutting down.
    Shutdown,
    /// The device was refused (not on the allow-list).
    Refused,
    /// A TLS listener's handshake failed or did not finish in time.
    TlsHandshake,
    /// Its partial frame was among the longest held when partial frames took the gateway
    /// past its budget (`limits.partial_bytes`).
    PartialBudget,
}

impl CloseReason {
    pub const ALL: [CloseReason; 11] = [
        CloseReason::Eof,
        CloseReason::Idle,
        CloseReason::FrameTimeout,
        CloseReason::Junk,
        CloseReason::Takeover,
        CloseReason::Error,
        CloseReason::SinkFailed,
        CloseReason::Shutdown,
        CloseReason::Refused,
        CloseReason::TlsHandshake,
        CloseReason::PartialBudget,
    ];

    pub fn label(self) -> &'static str {
        match self {
            CloseReason::Eof => "eof",
            CloseReason::Idle => "idle",
            CloseReason::FrameTimeout => "frame_timeout",
            CloseReason::Junk => "junk",
            CloseReason::Takeover => "takeover",
            CloseReason::Error => "error",
            CloseReason::SinkFailed => "sink_failed",
            CloseReason::Shutdown => "shutdown",
            CloseReason::Refused => "refused",
            CloseReason::TlsHandshake => "tls_handshake",
            CloseReason::PartialBudget => "partial_budget",
        }
    }
}
