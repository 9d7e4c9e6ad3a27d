//! Workflows: the business steps users run (convert a lead, move a deal through its stages,
//! resolve a ticket, …) built from ordinary record writes, so every step is attributed,
//! works offline and syncs like any edit. One module per area.

pub mod customer;
pub mod marketing;
pub mod sales;
pub mod service;
pub mod sla;
