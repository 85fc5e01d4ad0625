//! Avro on the topics that carry records, in the Confluent wire format
//! (`crate::registry::wire`) so Kafka Connect, ksqlDB, Flink and Confluent's
//! clients read them: the format flag, the raw users' schema, and the writer
//! that turns Arrow batches into framed records.

mod prune;
mod reader;
mod rows;
pub mod typed;
mod writer;

pub use prune::pruned;
pub use reader::{Read, Reader};
pub use rows::RowReader;
pub use writer::Writer;

use crate::registry::Registry;

/// How a stage writes the records it produces.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// JSON text, one object a record.
    #[default]
    Json,
    /// Avro binary framed with its schema's registry id (needs RTDS_SCHEMA_REGISTRY_URL).
    Avro,
}

/// The raw users' schema, schemas/users_raw.avsc: what `rtds ingest --format
/// avro` registers and writes (the shape `raw::decode::raw_schema` reads).
pub const USERS_RAW: &str = include_str!("../../schemas/users_raw.avsc");

/// The compatibility rtds asks of its subjects: a reader of a new version
/// reads the records of the old ones.
pub const COMPATIBILITY: &str = "BACKWARD";

/// The full name of the clean rows' record, whatever SQL made them: a
/// reader and a writer of it must agree on it (Avro schema resolution).
pub const ROW_RECORD: (&str, &str) = ("rtds", "created_users");

/// The Avro schema of rows shaped `arrow` (the transform's SQL output), as
/// `ROW_RECORD`; every optional field defaults to null, so a version that
/// adds one stays BACKWARD-compatible with the ones before.
pub fn row_schema(arrow: &arrow::datatypes::Schema) -> anyhow::Result<String> {
    use anyhow::Context;
    let derived =
        arrow_avro::schema::AvroSchema::try_from(arrow).context("deriving an Avro schema of the SQL's output")?;
    let mut schema: serde_json::Value =
        serde_json::from_str(&derived.json_string).context("reading the derived Avro schema")?;
    schema["namespace"] = ROW_RECORD.0.into();
    schema["name"] = ROW_RECORD.1.into();
    for field in schema["fields"].as_array_mut().into_iter().flatten() {
        let optional = field["type"].as_array().is_some_and(|u| u.first() == Some(&serde_json::json!("null")));
        if optional && field.get("default").is_none() {
            field["default"] = serde_json::Value::Null;
        }
    }
    Ok(schema.to_string())
}

/// The Avro schema the loads read rows as: the row contract's columns
/// (`crate::row::COLUMNS`) as the transform writes them (`typed`), read back
/// as text, the JSON rows' spelling. A writer's other fields are skipped; a
/// column it lacks reads as null.
pub fn contract_schema() -> (String, arrow::datatypes::SchemaRef) {
    use arrow::datatypes::{DataType, Field, Schema};
    let arrow = Schema::new(crate::row::names().map(|n| Field::new(n, DataType::Utf8, true)).collect::<Vec<_>>());
    let schema = row_schema(&typed::schema(&arrow)).expect("the contract's columns have an Avro schema");
    (schema, std::sync::Arc::new(arrow))
}

/// The registry subject of a topic's values (the Confluent default, TopicNameStrategy).
pub fn subject(topic: &str) -> String {
    format!("{topic}-value")
}

/// Register `schema` for the values of `topic` (BACKWARD), which `flag` is to
/// write: its id. No registry configured, or a schema it refuses, is a usage
/// error (exit 2) naming what to set, or the subject and the reason.
pub async fn register_for(registry: Option<&Registry>, flag: &str, topic: &str, schema: &str) -> anyhow::Result<u32> {
    let Some(registry) = registry else {
        return crate::error::usage(format!(
            "{flag} needs a schema registry: set RTDS_SCHEMA_REGISTRY_URL (or --schema-registry-url)"
        ));
    };
    let subject = subject(topic);
    let id = registry.register(&subject, schema, COMPATIBILITY).await?;
    tracing::info!(subject, schema_id = id, "writing Avro");
    Ok(id)
}

#[cfg(test)]
mod tests {
    use arrow::datatypes::{DataType, Field, Schema};

    #[test]
    fn a_row_schema_names_its_record_and_defaults_its_optional_fields_to_null() {
        let arrow = Schema::new(vec![Field::new("id", DataType::Utf8, false), Field::new("x", DataType::Utf8, true)]);
        let schema: serde_json::Value = serde_json::from_str(&super::row_schema(&arrow).unwrap()).unwrap();
        assert_eq!((schema["namespace"].as_str(), schema["name"].as_str()), (Some("rtds"), Some("created_users")));
        let fields = schema["fields"].as_array().unwrap();
        assert_eq!(fields[0]["type"], "string");
        assert!(fields[0].get("default").is_none(), "a required field has no default: {schema}");
        assert_eq!(fields[1]["type"], serde_json::json!(["null", "string"]));
        assert_eq!(fields[1]["default"], serde_json::Value::Null);
        assert!(fields[1].get("default").is_some(), "{schema}");
    }

    #[test]
    fn the_contract_schema_has_every_column_as_optional_text() {
        let (schema, arrow) = super::contract_schema();
        let schema: serde_json::Value = serde_json::from_str(&schema).unwrap();
        let names: Vec<&str> =
            schema["fields"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
        assert_eq!(names, crate::row::names().collect::<Vec<_>>());
        assert!(arrow.fields().iter().all(|f| f.is_nullable() && f.data_type() == &DataType::Utf8));
    }
}
