//! The device node: the tokio side of a device. Today it drives sync ([`sync::sync_once`],
//! [`sync::watch`]) between the replica and a relay; the web UI's server will live here too.
//!
//! The protocol logic is the sans-IO [`crm_sync::device::DeviceSync`]; this crate only owns
//! the WebSocket, the timers and the replica, and carries out the machine's effects in order.

pub mod bootstrap;
pub mod sync;
