//! The worker's broker side: a consuming connection for requests and a
//! publishing connection for results (kept apart so flow control on one
//! never stalls the other).

pub mod consume;
pub mod handler;
