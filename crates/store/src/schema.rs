//! The base's schema in the Meta API's shape, field validation, and the `check` diff.
//!
//! `airtable/base-schema.json` is the single description of the base. It uses the shape of
//! `GET /v0/meta/bases/{baseId}/tables` (`{"tables":[{"name","fields":[{"name","type","options"}]}]}`) so
//! it can be compared with a live base directly. One extension: a link field names its target with
//! `options.linkedTableName` (the file cannot know table ids); a live base gives `options.linkedTableId`,
//! and [`FieldSchema::link_target`] resolves either form.
//!
//! The same schema drives write validation in the SQLite backend and in the fake Airtable, so both reject
//! unknown fields, unknown select options and mistyped values the way Airtable does, and a test that
//! passes on SQLite does not hide a 422 that production would raise.

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Fields, StoreError, id::is_record_id};

/// The embedded copy of `airtable/base-schema.json`.
pub const BASE_SCHEMA_JSON: &str = include_str!("../../../airtable/base-schema.json");

/// Field types the Meta API cannot create; they must be added by hand in the Airtable UI.
pub const NOT_CREATABLE_TYPES: &[&str] = &[
    "formula",
    "createdTime",
    "lastModifiedTime",
    "autoNumber",
    "rollup",
    "count",
    "lookup",
    "multipleLookupValues",
    "button",
    "createdBy",
    "lastModifiedBy",
    "externalSyncSource",
    "aiText",
];

/// A base: its tables.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaseSchema {
    pub tables: Vec<TableSchema>,
}

/// One table. The first field is the primary field unless `primaryFieldId` says otherwise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TableSchema {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_field_id: Option<String>,
    pub fields: Vec<FieldSchema>,
}

/// One field, with the type name and options exactly as the Meta API spells them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldSchema {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub name: String,
    #[serde(rename = "type")]
    pub field_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<Value>,
}

impl BaseSchema {
    /// The schema shipped with the crate.
    pub fn embedded() -> Result<BaseSchema, StoreError> {
        serde_json::from_str(BASE_SCHEMA_JSON).map_err(|e| {
            StoreError::Config(format!(
                "embedded airtable/base-schema.json is invalid: {e}"
            ))
        })
    }

    /// Reads a schema file.
    pub fn load(path: &Path) -> Result<BaseSchema, StoreError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            StoreError::Config(format!("cannot read schema file {}: {e}", path.display()))
        })?;
        serde_json::from_str(&text).map_err(|e| {
            StoreError::Config(format!(
                "schema file {} is not a valid base schema: {e}",
                path.display()
            ))
        })
    }

    /// A table by name or by id (Airtable accepts both in URLs).
    pub fn table(&self, name_or_id: &str) -> Option<&TableSchema> {
        self.tables
            .iter()
            .find(|t| t.name == name_or_id || t.id.as_deref() == Some(name_or_id))
    }

    pub fn table_mut(&mut self, name_or_id: &str) -> Option<&mut TableSchema> {
        self.tables
            .iter_mut()
            .find(|t| t.name == name_or_id || t.id.as_deref() == Some(name_or_id))
    }

    /// Looks a table up or fails with the same error Airtable gives for an unknown table.
    pub fn require_table(&self, name_or_id: &str) -> Result<&TableSchema, StoreError> {
        self.table(name_or_id)
            .ok_or_else(|| StoreError::TableNotFound {
                table: name_or_id.to_string(),
            })
    }

    /// Checks field values for a write: every field exists, every value has its field's type, and every
    /// select option is one the field offers. `null` is always allowed (it clears the field).
    pub fn validate_fields(&self, table: &str, fields: &Fields) -> Result<(), StoreError> {
        let t = self.require_table(table)?;
        for (name, value) in fields {
            let f = t.field(name).ok_or_else(|| StoreError::UnknownField {
                table: t.name.clone(),
                field: name.clone(),
                airtable: String::new(),
            })?;
            f.validate_value(&t.name, value)?;
        }
        Ok(())
    }

    /// Checks a list of field names (a `fields[]` selection).
    pub fn validate_field_names<'a>(
        &self,
        table: &str,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), StoreError> {
        let t = self.require_table(table)?;
        for name in names {
            if t.field(name).is_none() {
                return Err(StoreError::UnknownField {
                    table: t.name.clone(),
                    field: name.to_string(),
                    airtable: String::new(),
                });
            }
        }
        Ok(())
    }
}

impl TableSchema {
    pub fn field(&self, name: &str) -> Option<&FieldSchema> {
        self.fields
            .iter()
            .find(|f| f.name == name || f.id.as_deref() == Some(name))
    }

    /// The primary field (the first one unless `primaryFieldId` names another).
    pub fn primary_field(&self) -> Option<&FieldSchema> {
        match &self.primary_field_id {
            Some(id) => self.fields.iter().find(|f| f.id.as_deref() == Some(id)),
            None => self.fields.first(),
        }
    }
}

impl FieldSchema {
    /// The option names of a select field.
    pub fn choices(&self) -> Vec<&str> {
        self.options
            .as_ref()
            .and_then(|o| o.get("choices"))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|c| c.get("name").and_then(Value::as_str))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The table a link field points to, from `linkedTableName` (schema file) or `linkedTableId` (live).
    pub fn link_target<'a>(&self, base: &'a BaseSchema) -> Option<&'a TableSchema> {
        let opts = self.options.as_ref()?;
        let key = opts
            .get("linkedTableName")
            .or_else(|| opts.get("linkedTableId"))
            .and_then(Value::as_str)?;
        base.table(key)
    }

    pub fn is_link(&self) -> bool {
        self.field_type == "multipleRecordLinks"
    }

    pub fn is_creatable(&self) -> bool {
        !NOT_CREATABLE_TYPES.contains(&self.field_type.as_str())
    }

    fn validate_value(&self, table: &str, value: &Value) -> Result<(), StoreError> {
        let invalid = |message: String| StoreError::InvalidValue {
            table: table.to_string(),
            field: self.name.clone(),
            message,
        };
        if value.is_null() {
            return Ok(());
        }
        match self.field_type.as_str() {
            "singleLineText" | "multilineText" | "email" | "url" | "phoneNumber" | "richText"
            | "date" | "dateTime" | "barcode"
                if !value.is_string() =>
            {
                return Err(invalid(format!("expected text, got {value}")));
            }
            "number" | "currency" | "percent" | "rating" | "duration" if !value.is_number() => {
                return Err(invalid(format!("expected a number, got {value}")));
            }
            "checkbox" if !value.is_boolean() => {
                return Err(invalid(format!("expected true or false, got {value}")));
            }
            "singleSelect" => {
                let s = value
                    .as_str()
                    .ok_or_else(|| invalid(format!("expected an option name, got {value}")))?;
                self.check_choice(table, s)?;
            }
            "multipleSelects" => {
                let items = value.as_array().ok_or_else(|| {
                    invalid(format!("expected a list of option names, got {value}"))
                })?;
                for item in items {
                    let s = item
                        .as_str()
                        .ok_or_else(|| invalid(format!("expected an option name, got {item}")))?;
                    self.check_choice(table, s)?;
                }
            }
            "multipleRecordLinks" => {
                let items = value.as_array().ok_or_else(|| {
                    invalid(format!("expected a list of record ids, got {value}"))
                })?;
                for item in items {
                    match item.as_str() {
                        Some(id) if is_record_id(id) => {}
                        _ => return Err(invalid(format!("{item} is not a record id"))),
                    }
                }
            }
            "multipleAttachments" => {
                let ok = value.as_array().is_some_and(|a| {
                    a.iter()
                        .all(|v| v.get("url").is_some() || v.get("id").is_some())
                });
                if !ok {
                    return Err(invalid(
                        "expected a list of {\"url\": ...} objects".to_string(),
                    ));
                }
            }
            t if NOT_CREATABLE_TYPES.contains(&t) => {
                return Err(invalid(format!(
                    "the field is computed ({t}) and cannot be written"
                )));
            }
            _ => {}
        }
        Ok(())
    }

    fn check_choice(&self, table: &str, s: &str) -> Result<(), StoreError> {
        if self.choices().contains(&s) {
            Ok(())
        } else {
            Err(StoreError::InvalidSelectOption {
                table: table.to_string(),
                field: self.name.clone(),
                value: s.to_string(),
                airtable: String::new(),
            })
        }
    }
}

/// One way in which a live base differs from the desired schema.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Difference {
    MissingTable {
        table: String,
        fields: usize,
    },
    MissingField {
        table: String,
        field: String,
        field_type: String,
    },
    WrongType {
        table: String,
        field: String,
        expected: String,
        actual: String,
    },
    MissingOptions {
        table: String,
        field: String,
        options: Vec<String>,
    },
    WrongLink {
        table: String,
        field: String,
        expected: String,
        actual: String,
    },
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Difference::MissingTable { table, fields } => {
                write!(
                    f,
                    "- table \"{table}\" is missing (with its {fields} fields)"
                )
            }
            Difference::MissingField {
                table,
                field,
                field_type,
            } => {
                write!(f, "- {table}: field \"{field}\" ({field_type}) is missing")
            }
            Difference::WrongType {
                table,
                field,
                expected,
                actual,
            } => {
                write!(
                    f,
                    "~ {table}: field \"{field}\" is {actual}, expected {expected}"
                )
            }
            Difference::MissingOptions {
                table,
                field,
                options,
            } => {
                write!(
                    f,
                    "~ {table}: field \"{field}\" lacks options: {}",
                    options.join(", ")
                )
            }
            Difference::WrongLink {
                table,
                field,
                expected,
                actual,
            } => {
                write!(
                    f,
                    "~ {table}: field \"{field}\" links to \"{actual}\", expected \"{expected}\""
                )
            }
        }
    }
}

/// Compares a live base with the desired schema. Extra tables and fields in the live base are fine
/// (Airtable adds inverse link fields by itself); only what the worker needs is reported.
pub fn diff(desired: &BaseSchema, live: &BaseSchema) -> Vec<Difference> {
    let mut out = Vec::new();
    for want in &desired.tables {
        let Some(have) = live.tables.iter().find(|t| t.name == want.name) else {
            out.push(Difference::MissingTable {
                table: want.name.clone(),
                fields: want.fields.len(),
            });
            continue;
        };
        for wf in &want.fields {
            let Some(hf) = have.fields.iter().find(|f| f.name == wf.name) else {
                out.push(Difference::MissingField {
                    table: want.name.clone(),
                    field: wf.name.clone(),
                    field_type: wf.field_type.clone(),
                });
                continue;
            };
            if hf.field_type != wf.field_type {
                out.push(Difference::WrongType {
                    table: want.name.clone(),
                    field: wf.name.clone(),
                    expected: wf.field_type.clone(),
                    actual: hf.field_type.clone(),
                });
                continue;
            }
            let have_choices: BTreeSet<&str> = hf.choices().into_iter().collect();
            let missing: Vec<String> = wf
                .choices()
                .into_iter()
                .filter(|c| !have_choices.contains(c))
                .map(str::to_string)
                .collect();
            if !missing.is_empty() {
                out.push(Difference::MissingOptions {
                    table: want.name.clone(),
                    field: wf.name.clone(),
                    options: missing,
                });
            }
            if wf.is_link() {
                let expected = wf
                    .link_target(desired)
                    .map(|t| t.name.clone())
                    .unwrap_or_default();
                let actual = hf
                    .link_target(live)
                    .map(|t| t.name.clone())
                    .unwrap_or_default();
                if expected != actual {
                    out.push(Difference::WrongLink {
                        table: want.name.clone(),
                        field: wf.name.clone(),
                        expected,
                        actual,
                    });
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn embedded_schema_has_the_seven_tables_and_resolves_links() {
        let s = BaseSchema::embedded().unwrap();
        let names: Vec<&str> = s.tables.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "Users",
                "Transcripts",
                "Run Requests",
                "Runs",
                "Baseline Packs",
                "Experiments",
                "Experiment Events"
            ]
        );
        for t in &s.tables {
            for f in &t.fields {
                assert!(
                    f.is_creatable(),
                    "{}.{} cannot be created by the API",
                    t.name,
                    f.name
                );
                if f.is_link() {
                    assert!(
                        f.link_target(&s).is_some(),
                        "{}.{} links nowhere",
                        t.name,
                        f.name
                    );
                }
            }
        }
        assert_eq!(
            s.table("Runs").unwrap().primary_field().unwrap().name,
            "Key"
        );
        assert!(diff(&s, &s).is_empty());
    }

    #[test]
    fn validates_values_like_airtable() {
        let s = BaseSchema::embedded().unwrap();
        let mut f = Fields::new();
        f.insert("Status".into(), json!("Queued"));
        f.insert("Attempt".into(), json!(1));
        f.insert("User".into(), json!(["rec0HLFTLAXuJ6suq"]));
        s.validate_fields("Runs", &f).unwrap();
        f.insert("Status".into(), json!("Bogus"));
        assert_eq!(
            s.validate_fields("Runs", &f).unwrap_err().code(),
            "INVALID_MULTIPLE_CHOICE_OPTIONS"
        );
        f.insert("Status".into(), json!("Queued"));
        f.insert("Colour".into(), json!("x"));
        assert_eq!(
            s.validate_fields("Runs", &f).unwrap_err().code(),
            "UNKNOWN_FIELD_NAME"
        );
        f.remove("Colour");
        f.insert("User".into(), json!(["nope"]));
        assert_eq!(
            s.validate_fields("Runs", &f).unwrap_err().code(),
            "INVALID_VALUE_FOR_COLUMN"
        );
        assert_eq!(
            s.validate_fields("Nope", &Fields::new())
                .unwrap_err()
                .code(),
            "TABLE_NOT_FOUND"
        );
    }
}
