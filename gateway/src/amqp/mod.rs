//! The gateway's two broker connections (publishing and consuming are kept
//! apart so flow control on one never stalls the other).

pub mod events;
pub mod submit;
pub mod unanswered;
