//! A reader schema of only the fields a query reads: Avro schema resolution
//! then skips the others (their bytes are still walked, so a record that is
//! not Avro of its schema is still refused) instead of building columns of
//! them nobody reads, as the JSON decoder leaves unread leaves null.

use anyhow::{Context, Result};
use serde_json::Value;

/// `schema` (Avro JSON, a record) with the leaves `reads` refuses (by dotted
/// path, `login.uuid`) left out, and the records none of whose leaves are read.
pub fn pruned(schema: &str, reads: impl Fn(&str) -> bool) -> Result<String> {
    let mut value: Value = serde_json::from_str(schema).context("reading an Avro schema")?;
    prune_record(&mut value, "", &reads);
    Ok(value.to_string())
}

/// Keep the fields of `record` under `prefix` that are read; whether any is.
fn prune_record(record: &mut Value, prefix: &str, reads: &impl Fn(&str) -> bool) -> bool {
    let Some(fields) = record.get_mut("fields").and_then(Value::as_array_mut) else { return true };
    fields.retain_mut(|field| {
        let path = match field["name"].as_str() {
            Some(name) if prefix.is_empty() => name.to_owned(),
            Some(name) => format!("{prefix}.{name}"),
            None => return true,
        };
        match nested_record(&mut field["type"]) {
            Some(inner) => prune_record(inner, &path, reads),
            None => reads(&path),
        }
    });
    !fields.is_empty()
}

/// The record a field's type is, alone or in a union (`["null", {record}]`).
fn nested_record(ty: &mut Value) -> Option<&mut Value> {
    let is_record = |t: &Value| t.get("type").and_then(Value::as_str) == Some("record");
    match ty {
        Value::Array(union) => union.iter_mut().find(|t| is_record(t)),
        t if is_record(t) => Some(t),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_leaves_read_and_their_records_are_kept() {
        let kept = pruned(crate::avro::USERS_RAW, |p| matches!(p, "login.uuid" | "name.first" | "email")).unwrap();
        let v: Value = serde_json::from_str(&kept).unwrap();
        let names = |r: &Value| r["fields"].as_array().unwrap().iter().map(|f| f["name"].clone()).collect::<Vec<_>>();
        assert_eq!(names(&v), ["name", "email", "login"]);
        let login = v["fields"][2]["type"].as_array().unwrap().iter().find(|t| t.is_object()).unwrap();
        assert_eq!(names(login), ["uuid"]);
        // Every leaf read: the schema as it was.
        let all = pruned(crate::avro::USERS_RAW, |_| true).unwrap();
        let original: Value = serde_json::from_str(crate::avro::USERS_RAW).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&all).unwrap(), original);
    }
}
