//! Integration tests against the real local stack (scripts/stack.sh up).
//! One test binary, so it links once.

mod aggregate;
mod avro;
mod cli;
mod cluster;
mod delivery;
mod delta;
mod docs;
mod faults;
mod harness;
mod ingest;
mod load;
mod matrix;
mod operations;
mod query;
mod services;
mod tls;
mod transform;
