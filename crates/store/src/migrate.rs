//! Schema migration, the work behind `coach-worker airtable check|apply`: compare a live base with
//! `airtable/base-schema.json`, and create what is missing through the Meta API.
//!
//! The schema is compiled into the binary ([`crate::schema::BASE_SCHEMA_JSON`]), so both commands work
//! from any directory with an installed binary; `--schema FILE` compares with another file instead.
//! Meta API calls go through the same client as record calls, so they share the per-base pacing of
//! `rate.rs` (an `apply` that creates a table and its fields stays under 5 requests a second). The
//! report goes to the writer the caller passes; errors are returned, for the caller to print.
//!
//! [`check`] prints a readable diff (missing tables, missing fields, wrong types, missing select options,
//! links to the wrong table) and returns [`Verdict::WorkLeft`] when anything differs. [`apply`] is a dry
//! run unless `yes`: it creates missing tables first (without their link fields, since a link needs the
//! target table's id, which may not exist yet), then every missing field including links. What the Meta
//! API cannot do — create computed fields (formula, createdTime, autoNumber, …), change a field's type,
//! or add select options to an existing field — is listed as work to do by hand, and makes the verdict
//! [`Verdict::WorkLeft`].
//!
//! The command line (argument parsing, exit codes 0 done / 1 work left / 2 error) lives in the worker
//! binary.

use std::io::Write;
use std::path::Path;

use serde_json::{Value, json};

use crate::airtable::AirtableClient;
use crate::schema::{self, BaseSchema, Difference, FieldSchema, TableSchema};
use crate::{AirtableConfig, StoreError};

/// What a [`check`] or an [`apply`] leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// `check`: the base matches. `apply`: nothing to do, a dry run printed, or everything created.
    Done,
    /// `check`: the base differs. `apply`: some changes must be made by hand.
    WorkLeft,
}

/// Waits one rate window before a new process's first request.
///
/// A new process knows nothing of the requests the previous command (or anyone) sent to the base in
/// the last second, so it leaves one rate window empty before its first request; otherwise
/// `check` then `apply` run back to back can reach six requests in a second and wait 30 s on a 429.
pub async fn wait_for_a_fresh_rate_window() {
    tokio::time::sleep(crate::rate::WINDOW).await;
}

/// The desired schema and how to name it in the report.
fn desired(path: Option<&Path>) -> Result<(BaseSchema, String), StoreError> {
    match path {
        Some(p) => Ok((BaseSchema::load(p)?, p.display().to_string())),
        None => Ok((
            BaseSchema::embedded()?,
            "the built-in schema (airtable/base-schema.json)".to_string(),
        )),
    }
}

async fn load(
    path: Option<&Path>,
    cfg: AirtableConfig,
) -> Result<(BaseSchema, String, AirtableClient, BaseSchema), StoreError> {
    let (desired, name) = desired(path)?;
    let client = AirtableClient::new(cfg)?;
    let live = client.meta_tables().await?;
    Ok((desired, name, client, live))
}

/// Compares the base with the schema at `path` (default: the built-in one) and prints the
/// differences to `out`, as text or (`as_json`) as one JSON object.
pub async fn check(
    path: Option<&Path>,
    as_json: bool,
    cfg: AirtableConfig,
    out: &mut dyn Write,
) -> Result<Verdict, StoreError> {
    let (desired, name, _, live) = load(path, cfg).await?;
    let diffs = schema::diff(&desired, &live);
    if as_json {
        let body = json!({ "ok": diffs.is_empty(), "differences": diffs });
        let _ = writeln!(out, "{body}");
    } else if diffs.is_empty() {
        let _ = writeln!(
            out,
            "The base matches {name} ({} tables checked).",
            desired.tables.len()
        );
    } else {
        let _ = writeln!(
            out,
            "The base differs from {name} ({} differences):",
            diffs.len()
        );
        for d in &diffs {
            let _ = writeln!(out, "{d}");
        }
        let _ = writeln!(
            out,
            "Run `coach-worker airtable apply` to see what can be created, then `apply --yes` to create it."
        );
    }
    Ok(if diffs.is_empty() {
        Verdict::Done
    } else {
        Verdict::WorkLeft
    })
}

/// A field as the Meta API wants it for creation: no id, links pointing at a table id.
fn field_for_create(f: &FieldSchema, live: &BaseSchema) -> Result<FieldSchema, String> {
    let mut f = f.clone();
    f.id = None;
    if f.is_link() {
        let target = f
            .options
            .as_ref()
            .and_then(|o| o.get("linkedTableName").or_else(|| o.get("linkedTableId")))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let id = live
            .table(&target)
            .and_then(|t| t.id.clone())
            .ok_or_else(|| format!("linked table \"{target}\" does not exist in the base"))?;
        let mut opts = f.options.take().unwrap_or_else(|| json!({}));
        if let Some(o) = opts.as_object_mut() {
            o.remove("linkedTableName");
            o.insert("linkedTableId".into(), json!(id));
        }
        f.options = Some(opts);
    }
    Ok(f)
}

/// Prints the plan to create what the base lacks against the schema at `path` (default: the
/// built-in one), and with `yes` carries it out.
pub async fn apply(
    path: Option<&Path>,
    yes: bool,
    cfg: AirtableConfig,
    out: &mut dyn Write,
) -> Result<Verdict, StoreError> {
    let (desired, name, client, mut live) = load(path, cfg).await?;
    let diffs = schema::diff(&desired, &live);
    if diffs.is_empty() {
        let _ = writeln!(out, "Nothing to do: the base matches {name}.");
        return Ok(Verdict::Done);
    }
    let mode = if yes { "" } else { "would " };
    let mut manual: Vec<String> = Vec::new();
    let mut deferred: Vec<(String, FieldSchema)> = Vec::new();

    // 1. Missing tables, with their non-link creatable fields (the primary field first).
    for d in &diffs {
        let Difference::MissingTable { table, .. } = d else {
            continue;
        };
        let Some(want) = desired.table(table) else {
            continue;
        };
        let Some(primary) = want.fields.first() else {
            manual.push(format!(
                "table \"{table}\" has no fields in the schema; add at least a primary field"
            ));
            continue;
        };
        if primary.is_link() || !primary.is_creatable() {
            manual.push(format!(
                "table \"{table}\": its primary field \"{}\" is a {}, which the API cannot create as a primary field; create the table by hand",
                primary.name, primary.field_type
            ));
            continue;
        }
        let mut now = Vec::new();
        for f in &want.fields {
            if !f.is_creatable() {
                manual.push(manual_field(table, f));
            } else if f.is_link() {
                deferred.push((table.clone(), f.clone()));
            } else {
                now.push(FieldSchema {
                    id: None,
                    ..f.clone()
                });
            }
        }
        let names: Vec<&str> = now.iter().map(|f| f.name.as_str()).collect();
        let _ = writeln!(
            out,
            "+ {mode}create table \"{table}\" with fields: {}",
            names.join(", ")
        );
        if yes {
            let created = client
                .meta_create_table(&TableSchema {
                    id: None,
                    name: table.clone(),
                    description: want.description.clone(),
                    primary_field_id: None,
                    fields: now,
                })
                .await?;
            live.tables.push(created);
        }
    }

    // 2. Missing fields of existing tables, then the deferred link fields of new tables.
    for d in &diffs {
        match d {
            Difference::MissingField { table, field, .. } => {
                if let Some(f) = desired.table(table).and_then(|t| t.field(field)) {
                    if f.is_creatable() {
                        deferred.push((table.clone(), f.clone()));
                    } else {
                        manual.push(manual_field(table, f));
                    }
                }
            }
            Difference::WrongType { table, field, expected, actual } => manual.push(format!(
                "{table}: change field \"{field}\" from {actual} to {expected} in the Airtable UI (the API cannot change types)"
            )),
            Difference::MissingOptions { table, field, options } => manual.push(format!(
                "{table}: add the options {} to field \"{field}\" in the Airtable UI",
                options.join(", ")
            )),
            Difference::WrongLink { table, field, expected, .. } => manual.push(format!(
                "{table}: make field \"{field}\" link to \"{expected}\" in the Airtable UI"
            )),
            Difference::MissingTable { .. } => {}
        }
    }
    for (table, f) in &deferred {
        let _ = writeln!(
            out,
            "+ {mode}create field {table}.\"{}\" ({})",
            f.name, f.field_type
        );
        if !yes {
            continue;
        }
        let spec = match field_for_create(f, &live) {
            Ok(s) => s,
            Err(why) => {
                manual.push(format!("{table}: field \"{}\" not created: {why}", f.name));
                continue;
            }
        };
        let table_id = live
            .table(table)
            .and_then(|t| t.id.clone())
            .ok_or_else(|| StoreError::TableNotFound {
                table: table.clone(),
            })?;
        let created = client.meta_create_field(&table_id, &spec).await?;
        if let Some(t) = live.table_mut(table) {
            t.fields.push(created);
        }
    }

    for m in &manual {
        let _ = writeln!(out, "! by hand: {m}");
    }
    if !yes {
        let _ = writeln!(
            out,
            "Dry run: nothing was changed. Re-run with --yes to create the items marked +."
        );
        return Ok(Verdict::Done);
    }
    let _ = writeln!(
        out,
        "Created {} field(s) and the missing tables.{}",
        deferred.len(),
        if manual.is_empty() {
            ""
        } else {
            " Some changes must be made by hand (see above)."
        }
    );
    Ok(if manual.is_empty() {
        Verdict::Done
    } else {
        Verdict::WorkLeft
    })
}

fn manual_field(table: &str, f: &FieldSchema) -> String {
    format!(
        "{table}: add field \"{}\" of type {} in the Airtable UI (the Meta API cannot create {} fields)",
        f.name, f.field_type, f.field_type
    )
}
