//! The stores `rtds load` writes to, one file each.

pub mod cassandra;
pub mod postgres;
