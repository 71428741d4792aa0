//! `coach-worker airtable check|apply`: compare a live base with `airtable/base-schema.json`, and create
//! what is missing through the Meta API.
//!
//! The schema is compiled into the binary ([`crate::schema::BASE_SCHEMA_JSON`]), so both commands work
//! from any directory with an installed binary; `--schema FILE` compares with another file instead.
//! Meta API calls go through the same client as record calls, so they share the per-base pacing of
//! `rate.rs` (an `apply` that creates a table and its fields stays under 5 requests a second). The
//! report goes to standard output, errors to standard error.
//!
//! `check` prints a readable diff (missing tables, missing fields, wrong types, missing select options,
//! links to the wrong table) and exits 1 when anything differs. `apply` is a dry run unless `--yes`:
//! it creates missing tables first (without their link fields, since a link needs the target table's id,
//! which may not exist yet), then every missing field including links. What the Meta API cannot do —
//! create computed fields (formula, createdTime, autoNumber, …), change a field's type, or add select
//! options to an existing field — is listed as work to do by hand, and leaves the exit code at 1.
//!
//! Exit codes follow the binary's convention: 0 done/matching, 1 the base differs, 2 bad input or an API
//! error.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::airtable::AirtableClient;
use crate::schema::{self, BaseSchema, Difference, FieldSchema, TableSchema};
use crate::{AirtableConfig, StoreError};

/// The `airtable` subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Compare the Airtable base with the schema file; exit 1 when something is missing or different.
    Check {
        /// Schema file in the Meta API's shape (default: the schema built into the binary, the
        /// repository's airtable/base-schema.json).
        #[arg(long)]
        schema: Option<PathBuf>,
        /// Print the differences as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Create missing tables and fields through the Meta API (dry run unless --yes).
    Apply {
        /// Schema file in the Meta API's shape (default: the schema built into the binary, the
        /// repository's airtable/base-schema.json).
        #[arg(long)]
        schema: Option<PathBuf>,
        /// Really create them (otherwise only print the plan).
        #[arg(long)]
        yes: bool,
    },
}

/// Runs a subcommand, printing the report to stdout and errors to stderr; returns the exit code.
///
/// A new process knows nothing of the requests the previous command (or anyone) sent to the base in
/// the last second, so it leaves one rate window empty before its first request; otherwise
/// `check` then `apply` run back to back can reach six requests in a second and wait 30 s on a 429.
pub async fn run(cmd: Command, cfg: AirtableConfig) -> i32 {
    tokio::time::sleep(crate::rate::WINDOW).await;
    run_to(cmd, cfg, &mut std::io::stdout(), &mut std::io::stderr()).await
}

/// Same as [`run`], printing the report to `out` and errors to `err` (tests capture both).
pub async fn run_to(
    cmd: Command,
    cfg: AirtableConfig,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> i32 {
    let result = match cmd {
        Command::Check { schema, json } => check(schema.as_deref(), json, cfg, out).await,
        Command::Apply { schema, yes } => apply(schema.as_deref(), yes, cfg, out).await,
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            let _ = writeln!(err, "error [{}]: {e}", e.code());
            2
        }
    }
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

async fn check(
    path: Option<&Path>,
    as_json: bool,
    cfg: AirtableConfig,
    out: &mut dyn Write,
) -> Result<i32, StoreError> {
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
    Ok(if diffs.is_empty() { 0 } else { 1 })
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

async fn apply(
    path: Option<&Path>,
    yes: bool,
    cfg: AirtableConfig,
    out: &mut dyn Write,
) -> Result<i32, StoreError> {
    let (desired, name, client, mut live) = load(path, cfg).await?;
    let diffs = schema::diff(&desired, &live);
    if diffs.is_empty() {
        let _ = writeln!(out, "Nothing to do: the base matches {name}.");
        return Ok(0);
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
        return Ok(0);
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
    Ok(if manual.is_empty() { 0 } else { 1 })
}

fn manual_field(table: &str, f: &FieldSchema) -> String {
    format!(
        "{table}: add field \"{}\" of type {} in the Airtable UI (the Meta API cannot create {} fields)",
        f.name, f.field_type, f.field_type
    )
}
