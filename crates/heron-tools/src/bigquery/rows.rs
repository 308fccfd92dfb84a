//! BigQuery's row format (`{"f": [{"v": …}]}`, every scalar a string) turned into plain JSON
//! objects the model can read: integers, floats and booleans as JSON numbers and booleans,
//! timestamps (float seconds) as RFC 3339, records as objects, repeated fields as arrays;
//! everything else (dates, numerics, bytes, JSON, geography) stays BigQuery's string.

use gcp_bigquery_client::model::field_type::FieldType;
use gcp_bigquery_client::model::table_cell::TableCell;
use gcp_bigquery_client::model::table_field_schema::TableFieldSchema;
use gcp_bigquery_client::model::table_row::TableRow;
use serde_json::{Map, Value};

pub(crate) fn to_json(fields: &[TableFieldSchema], row: &TableRow) -> Value {
    let cells = row.columns.as_deref().unwrap_or_default();
    record(fields, cells)
}

fn record(fields: &[TableFieldSchema], cells: &[TableCell]) -> Value {
    let mut object = Map::new();
    for (i, field) in fields.iter().enumerate() {
        let raw = cells
            .get(i)
            .and_then(|c| c.value.clone())
            .unwrap_or(Value::Null);
        object.insert(field.name.clone(), value(field, raw));
    }
    Value::Object(object)
}

fn value(field: &TableFieldSchema, raw: Value) -> Value {
    if field.mode.as_deref() == Some("REPEATED") {
        return match raw {
            Value::Array(items) => Value::Array(
                items
                    .into_iter()
                    .map(|item| scalar_or_record(field, item.get("v").cloned().unwrap_or(item)))
                    .collect(),
            ),
            Value::Null => Value::Array(Vec::new()),
            other => other,
        };
    }
    scalar_or_record(field, raw)
}

fn scalar_or_record(field: &TableFieldSchema, raw: Value) -> Value {
    match (&field.r#type, raw) {
        (_, Value::Null) => Value::Null,
        (FieldType::Record | FieldType::Struct, raw) => {
            let nested = field.fields.as_deref().unwrap_or_default();
            let cells: Vec<TableCell> = raw
                .get("f")
                .cloned()
                .and_then(|f| serde_json::from_value(f).ok())
                .unwrap_or_default();
            record(nested, &cells)
        }
        (FieldType::Integer | FieldType::Int64, Value::String(s)) => s
            .parse::<i64>()
            .map(Value::from)
            .unwrap_or(Value::String(s)),
        (FieldType::Float | FieldType::Float64, Value::String(s)) => s
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .unwrap_or(Value::String(s)),
        (FieldType::Boolean | FieldType::Bool, Value::String(s)) => match s.as_str() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => Value::String(s),
        },
        (FieldType::Timestamp, Value::String(s)) => timestamp(&s).unwrap_or(Value::String(s)),
        (_, raw) => raw,
    }
}

/// BigQuery sends timestamps as float seconds since the epoch (`"1.7000001E9"`).
fn timestamp(text: &str) -> Option<Value> {
    let seconds: f64 = text.parse().ok()?;
    let micros = (seconds * 1e6).round();
    if !micros.is_finite() || micros.abs() > 9.2e18 {
        return None;
    }
    let at = chrono::DateTime::from_timestamp_micros(micros as i64)?;
    Some(Value::String(
        at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Vec<TableFieldSchema> {
        serde_json::from_value(json!([
            {"name": "user", "type": "STRING", "mode": "NULLABLE"},
            {"name": "failures", "type": "INTEGER"},
            {"name": "ratio", "type": "FLOAT"},
            {"name": "mfa", "type": "BOOLEAN"},
            {"name": "at", "type": "TIMESTAMP"},
            {"name": "ips", "type": "STRING", "mode": "REPEATED"},
            {"name": "geo", "type": "RECORD", "fields": [
                {"name": "country", "type": "STRING"}, {"name": "asn", "type": "INTEGER"}]}
        ]))
        .unwrap()
    }

    #[test]
    fn scalars_records_and_repeated_fields_become_plain_json() {
        let row: TableRow = serde_json::from_value(json!({"f": [
            {"v": "alice"}, {"v": "42"}, {"v": "0.5"}, {"v": "true"}, {"v": "1.7000001E9"},
            {"v": [{"v": "203.0.113.9"}, {"v": "198.51.100.7"}]},
            {"v": {"f": [{"v": "NL"}, {"v": "1136"}]}}
        ]}))
        .unwrap();
        assert_eq!(
            to_json(&schema(), &row),
            json!({"user": "alice", "failures": 42, "ratio": 0.5, "mfa": true,
                   "at": "2023-11-14T22:15:00Z",
                   "ips": ["203.0.113.9", "198.51.100.7"],
                   "geo": {"country": "NL", "asn": 1136}})
        );
    }

    #[test]
    fn nulls_stay_null_and_missing_cells_are_null() {
        let row: TableRow = serde_json::from_value(json!({"f": [{"v": null}]})).unwrap();
        let out = to_json(&schema(), &row);
        assert_eq!(out["user"], Value::Null);
        assert_eq!(out["failures"], Value::Null);
        assert_eq!(out["ips"], json!([]));
    }
}
