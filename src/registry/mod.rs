//! A Confluent-compatible schema registry (the stack runs Apicurio's, under
//! /apis/ccompat/v7): where it is and how to reach it (`RegistryOpts`), the
//! schemas registered by subject and fetched by id (`Registry`), and the
//! Confluent wire format that names a record's schema (`wire`).

mod client;
pub mod wire;

pub use client::{Registry, RegistryError};

use crate::validate;

/// Where the registry is. Its user and password come only from the
/// environment (`ENV_ONLY`), as the stores' do.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RegistryOpts {
    /// Base URL of a Confluent-compatible schema registry (Apicurio: http://HOST:PORT/apis/ccompat/v7).
    /// Needed only by the Avro formats; `rtds check` probes it when set.
    #[arg(long, env = "RTDS_SCHEMA_REGISTRY_URL", global = true, value_parser = validate::parse_http_url)]
    pub schema_registry_url: Option<String>,
}

/// The registry's settings read only from the environment.
pub const ENV_ONLY: &[(&str, &str)] = &[
    ("RTDS_SCHEMA_REGISTRY_USER", "schema registry user (HTTP basic auth)"),
    ("RTDS_SCHEMA_REGISTRY_PASSWORD", "its password"),
    ("RTDS_SCHEMA_REGISTRY_PASSWORD_FILE", "a file holding it"),
    ("RTDS_SCHEMA_REGISTRY_CA_FILE", "PEM CA that signs an https registry's certificate"),
];
