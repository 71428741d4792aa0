//! Typed records for the seven tables of the base (ARCHITECTURE §5), mapped to and from [`Fields`] by
//! field name.
//!
//! The mapping goes through serde with one `#[serde(rename = "Field Name")]` per field, so the field names
//! live in exactly one place next to their Rust types, and the schema test below checks every one of them
//! against `airtable/base-schema.json`. Every field is optional (`Option` or an empty `Vec`) because
//! Airtable omits empty fields from responses: absent reads as empty. `to_fields` leaves out `None` and
//! empty links, so writing a typed record never clears fields it does not mention; to clear a field, send
//! `null` for it in raw [`Fields`]. Links are `Vec<RecordId>`: every id is validated once, when the record
//! is read, so a malformed link from the base fails the read with `STORE_DECODE` naming the record, its
//! table and the bad id, instead of being dropped or followed later; select options are enums whose serde names are
//! the option names. The Runs table's `Type` is [`RunType`], the run type the whole
//! workspace shares (`coach_transcript::RunType`, re-exported here): the store and the coaching crate
//! both build on the transcript crate and on neither other, so the type lives there.
//!
//! Partial updates are typed too ([`TableUpdate`]: [`RunRequestUpdate`], [`BaselinePackUpdate`], …,
//! each field a [`Change`]: keep, clear or set), and so are the list queries the worker makes
//! ([`queries`]), so no caller spells a field name. [`Table`] names the seven tables; the `&str`
//! constants remain for the untyped API (schema tools and tests).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Fields, Record, RecordId, StoreError};

pub use coach_transcript::RunType;

/// The seven tables of the base.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    Users,
    Transcripts,
    RunRequests,
    Runs,
    BaselinePacks,
    Experiments,
    ExperimentEvents,
}

impl Table {
    /// The table's name in the base.
    pub const fn as_str(self) -> &'static str {
        match self {
            Table::Users => "Users",
            Table::Transcripts => "Transcripts",
            Table::RunRequests => "Run Requests",
            Table::Runs => "Runs",
            Table::BaselinePacks => "Baseline Packs",
            Table::Experiments => "Experiments",
            Table::ExperimentEvents => "Experiment Events",
        }
    }

    /// All seven, in schema order.
    pub const ALL: [Table; 7] = [
        Table::Users,
        Table::Transcripts,
        Table::RunRequests,
        Table::Runs,
        Table::BaselinePacks,
        Table::Experiments,
        Table::ExperimentEvents,
    ];
}

impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl AsRef<str> for Table {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

// The names as text, for the untyped API (schema tools, tests that name tables).
pub const USERS: &str = Table::Users.as_str();
pub const TRANSCRIPTS: &str = Table::Transcripts.as_str();
pub const RUN_REQUESTS: &str = Table::RunRequests.as_str();
pub const RUNS: &str = Table::Runs.as_str();
pub const BASELINE_PACKS: &str = Table::BaselinePacks.as_str();
pub const EXPERIMENTS: &str = Table::Experiments.as_str();
pub const EXPERIMENT_EVENTS: &str = Table::ExperimentEvents.as_str();

/// All seven table names, in schema order.
pub const ALL: [&str; 7] = [
    USERS,
    TRANSCRIPTS,
    RUN_REQUESTS,
    RUNS,
    BASELINE_PACKS,
    EXPERIMENTS,
    EXPERIMENT_EVENTS,
];

/// A typed view of one table's records.
pub trait TableRecord: Serialize + DeserializeOwned + Sized {
    /// The table's name in the base.
    const TABLE: &'static str;
    /// The table.
    const KIND: Table;

    /// The record id (empty for a record not yet written).
    fn id(&self) -> &str;
    fn set_id(&mut self, id: String);

    /// Reads a record; absent fields become `None` / empty.
    fn from_record(r: &Record) -> Result<Self, StoreError> {
        let mut out: Self =
            serde_json::from_value(Value::Object(r.fields.clone())).map_err(|e| {
                StoreError::Decode(format!(
                    "record {} of \"{}\" does not match its type: {e}",
                    r.id,
                    Self::TABLE
                ))
            })?;
        out.set_id(r.id.clone());
        Ok(out)
    }

    /// The fields to write (`None` and empty links left out).
    fn to_fields(&self) -> Fields {
        match serde_json::to_value(self) {
            Ok(Value::Object(m)) => m,
            _ => Fields::new(),
        }
    }
}

macro_rules! table_record {
    ($t:ty, $kind:expr) => {
        impl TableRecord for $t {
            const TABLE: &'static str = $kind.as_str();
            const KIND: Table = $kind;
            fn id(&self) -> &str {
                &self.id
            }
            fn set_id(&mut self, id: String) {
                self.id = id;
            }
        }
    };
}

macro_rules! select {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $(#[serde(rename = $text)] $variant),+
        }
        impl $name {
            /// The option's name in the base.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
            /// Every option, in schema order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
        }
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

select!(Role { Coachee = "coachee", Coach = "coach", Admin = "admin" });
select!(TranscriptFormat { Auto = "auto", Vtt = "vtt", Srt = "srt", Json = "json", Text = "text", Docx = "docx" });
select!(ParseStatus { Pending = "Pending", Parsed = "Parsed", Failed = "Failed" });
select!(RunRequestStatus { Queued = "Queued", Processing = "Processing", Done = "Done", Failed = "Failed" });
select!(RunRequestSource { Make = "make", Airtable = "airtable", Admin = "admin" });
select!(RunStatus { Queued = "Queued", Running = "Running", Succeeded = "Succeeded", Failed = "Failed" });
select!(BaselinePackStatus { Draft = "Draft", Queued = "Queued", Building = "Building", Ready = "Ready", Failed = "Failed" });
select!(ExperimentStatus { Active = "Active", Completed = "Completed", Abandoned = "Abandoned" });
select!(EventType { Instantiated = "instantiated", Attempt = "attempt", Completed = "completed" });
select!(Attempted { Yes = "yes", No = "no", Unclear = "unclear" });

/// An attachment as Airtable returns it (only what the worker reads), or `{url}` to write one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Attachment {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct User {
    #[serde(skip)]
    pub id: String,
    #[serde(rename = "Name", default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(rename = "Email", default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(rename = "Role", default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    #[serde(rename = "Coach", default, skip_serializing_if = "Vec::is_empty")]
    pub coach: Vec<RecordId>,
    #[serde(
        rename = "Active Experiment",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub active_experiment: Vec<RecordId>,
}
table_record!(User, Table::Users);

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Transcript {
    #[serde(skip)]
    pub id: String,
    #[serde(rename = "Title", default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(rename = "User", default, skip_serializing_if = "Vec::is_empty")]
    pub user: Vec<RecordId>,
    #[serde(
        rename = "Meeting Date",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub meeting_date: Option<String>,
    #[serde(rename = "Format", default, skip_serializing_if = "Option::is_none")]
    pub format: Option<TranscriptFormat>,
    #[serde(
        rename = "Transcript",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub transcript: Option<String>,
    #[serde(rename = "File", default, skip_serializing_if = "Vec::is_empty")]
    pub file: Vec<Attachment>,
    #[serde(
        rename = "Coachee Speaker",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub coachee_speaker: Option<String>,
    #[serde(
        rename = "Parse Status",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub parse_status: Option<ParseStatus>,
    #[serde(
        rename = "Parse Error",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub parse_error: Option<String>,
    /// Lines the parser could not place, one per line (`line N CODE: message`).
    #[serde(
        rename = "Parse Warnings",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub parse_warnings: Option<String>,
    #[serde(rename = "Segments", default, skip_serializing_if = "Option::is_none")]
    pub segments: Option<i64>,
    #[serde(rename = "Words", default, skip_serializing_if = "Option::is_none")]
    pub words: Option<i64>,
}
table_record!(Transcript, Table::Transcripts);

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RunRequest {
    #[serde(skip)]
    pub id: String,
    #[serde(rename = "Key", default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(rename = "User", default, skip_serializing_if = "Vec::is_empty")]
    pub user: Vec<RecordId>,
    #[serde(rename = "Transcript", default, skip_serializing_if = "Vec::is_empty")]
    pub transcript: Vec<RecordId>,
    #[serde(rename = "Status", default, skip_serializing_if = "Option::is_none")]
    pub status: Option<RunRequestStatus>,
    #[serde(rename = "Run", default, skip_serializing_if = "Vec::is_empty")]
    pub run: Vec<RecordId>,
    #[serde(rename = "Error", default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(rename = "Source", default, skip_serializing_if = "Option::is_none")]
    pub source: Option<RunRequestSource>,
}
table_record!(RunRequest, Table::RunRequests);

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Run {
    #[serde(skip)]
    pub id: String,
    #[serde(rename = "Key", default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(rename = "Type", default, skip_serializing_if = "Option::is_none")]
    pub run_type: Option<RunType>,
    #[serde(rename = "User", default, skip_serializing_if = "Vec::is_empty")]
    pub user: Vec<RecordId>,
    #[serde(rename = "Run Request", default, skip_serializing_if = "Vec::is_empty")]
    pub run_request: Vec<RecordId>,
    #[serde(
        rename = "Baseline Pack",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub baseline_pack: Vec<RecordId>,
    #[serde(rename = "Transcripts", default, skip_serializing_if = "Vec::is_empty")]
    pub transcripts: Vec<RecordId>,
    #[serde(rename = "Status", default, skip_serializing_if = "Option::is_none")]
    pub status: Option<RunStatus>,
    #[serde(rename = "Attempt", default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<i64>,
    #[serde(rename = "Replay Of", default, skip_serializing_if = "Vec::is_empty")]
    pub replay_of: Vec<RecordId>,
    #[serde(rename = "Provider", default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(rename = "Model", default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(
        rename = "Prompt Version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub prompt_version: Option<String>,
    #[serde(
        rename = "Input Tokens",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub input_tokens: Option<i64>,
    #[serde(
        rename = "Output Tokens",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub output_tokens: Option<i64>,
    #[serde(rename = "Cost USD", default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    #[serde(
        rename = "Duration Ms",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub duration_ms: Option<i64>,
    /// Unchecked reads as `None` (Airtable omits `false`).
    #[serde(
        rename = "Gate1 Passed",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub gate1_passed: Option<bool>,
    #[serde(
        rename = "Gate1 Report",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub gate1_report: Option<String>,
    #[serde(rename = "Output", default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    #[serde(
        rename = "Coaching Card",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub coaching_card: Option<String>,
    #[serde(rename = "Metrics", default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<String>,
    #[serde(rename = "Error", default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(
        rename = "Started At",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub started_at: Option<String>,
    #[serde(
        rename = "Finished At",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub finished_at: Option<String>,
}
table_record!(Run, Table::Runs);

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct BaselinePack {
    #[serde(skip)]
    pub id: String,
    #[serde(rename = "Key", default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(rename = "Name", default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(rename = "User", default, skip_serializing_if = "Vec::is_empty")]
    pub user: Vec<RecordId>,
    #[serde(rename = "Transcripts", default, skip_serializing_if = "Vec::is_empty")]
    pub transcripts: Vec<RecordId>,
    #[serde(rename = "Status", default, skip_serializing_if = "Option::is_none")]
    pub status: Option<BaselinePackStatus>,
    #[serde(rename = "Run", default, skip_serializing_if = "Vec::is_empty")]
    pub run: Vec<RecordId>,
    #[serde(rename = "Experiment", default, skip_serializing_if = "Vec::is_empty")]
    pub experiment: Vec<RecordId>,
    #[serde(rename = "Error", default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
table_record!(BaselinePack, Table::BaselinePacks);

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Experiment {
    #[serde(skip)]
    pub id: String,
    #[serde(rename = "Key", default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(rename = "Title", default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(rename = "User", default, skip_serializing_if = "Vec::is_empty")]
    pub user: Vec<RecordId>,
    #[serde(
        rename = "Baseline Pack",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub baseline_pack: Vec<RecordId>,
    #[serde(rename = "Source Run", default, skip_serializing_if = "Vec::is_empty")]
    pub source_run: Vec<RecordId>,
    #[serde(rename = "Behavior", default, skip_serializing_if = "Option::is_none")]
    pub behavior: Option<String>,
    #[serde(
        rename = "Success Signal",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub success_signal: Option<String>,
    #[serde(
        rename = "Target Meetings",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub target_meetings: Option<i64>,
    #[serde(rename = "Status", default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ExperimentStatus>,
    #[serde(
        rename = "Started At",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub started_at: Option<String>,
}
table_record!(Experiment, Table::Experiments);

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ExperimentEvent {
    #[serde(skip)]
    pub id: String,
    #[serde(rename = "Key", default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(rename = "Experiment", default, skip_serializing_if = "Vec::is_empty")]
    pub experiment: Vec<RecordId>,
    #[serde(rename = "Run", default, skip_serializing_if = "Vec::is_empty")]
    pub run: Vec<RecordId>,
    #[serde(rename = "Type", default, skip_serializing_if = "Option::is_none")]
    pub event_type: Option<EventType>,
    #[serde(rename = "Attempted", default, skip_serializing_if = "Option::is_none")]
    pub attempted: Option<Attempted>,
    #[serde(rename = "Evidence", default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<String>,
    #[serde(
        rename = "Occurred At",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub occurred_at: Option<String>,
}
table_record!(ExperimentEvent, Table::ExperimentEvents);

/// One field of a typed update: left as it is, cleared, or set.
///
/// Serialises as the field's value (`Set`) or `null` (`Clear`); `Keep` is left out of the update, so
/// an update never touches a field it does not mention.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Change<T> {
    #[default]
    Keep,
    Clear,
    Set(T),
}

impl<T> Change<T> {
    pub fn is_keep(&self) -> bool {
        matches!(self, Change::Keep)
    }
}

impl<T: Serialize> Serialize for Change<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Change::Set(v) => v.serialize(s),
            Change::Keep | Change::Clear => s.serialize_none(),
        }
    }
}

/// A typed partial update (PATCH) of one table's records.
pub trait TableUpdate: Serialize {
    /// The record type of the table it updates.
    type Record: TableRecord;

    /// The fields to send: set ones with their value, cleared ones as `null`.
    fn to_fields(&self) -> Fields {
        match serde_json::to_value(self) {
            Ok(Value::Object(m)) => m,
            _ => Fields::new(),
        }
    }
}

macro_rules! table_update {
    ($(#[$m:meta])* $name:ident for $record:ty { $($(#[$fm:meta])* $field:ident: $t:ty = $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Default, Serialize)]
        pub struct $name {
            $($(#[$fm])* #[serde(rename = $text, skip_serializing_if = "Change::is_keep")] pub $field: Change<$t>),+
        }
        impl TableUpdate for $name {
            type Record = $record;
        }
    };
}

table_update!(
    /// What the worker changes on a user.
    UserUpdate for User { active_experiment: Vec<RecordId> = "Active Experiment" }
);
table_update!(
    /// The parse outcome written onto a transcript.
    TranscriptUpdate for Transcript {
        parse_status: ParseStatus = "Parse Status",
        parse_error: String = "Parse Error",
        parse_warnings: String = "Parse Warnings",
        segments: i64 = "Segments",
        words: i64 = "Words",
    }
);
table_update!(
    /// A Run Request's progress.
    RunRequestUpdate for RunRequest {
        status: RunRequestStatus = "Status",
        run: Vec<RecordId> = "Run",
        error: String = "Error",
    }
);
table_update!(
    /// A Baseline Pack's progress.
    BaselinePackUpdate for BaselinePack {
        status: BaselinePackStatus = "Status",
        run: Vec<RecordId> = "Run",
        experiment: Vec<RecordId> = "Experiment",
        error: String = "Error",
    }
);
table_update!(
    /// An Experiment's status.
    ExperimentUpdate for Experiment { status: ExperimentStatus = "Status" }
);

/// The queries the worker makes, so their field names live here too.
pub mod queries {
    use super::*;
    use crate::{Filter, ListQuery};

    /// Run Requests waiting to run (the R1 poller).
    pub fn queued_run_requests() -> ListQuery {
        ListQuery::new()
            .filter(Filter::eq("Status", RunRequestStatus::Queued.as_str()))
            .fields(["Key", "Status"])
    }

    /// The `attempt` events of an experiment (by its Key), with their Key and judgement.
    pub fn attempt_events(experiment_key: &str) -> ListQuery {
        ListQuery::new()
            .filter(Filter::and([
                Filter::link_contains("Experiment", experiment_key),
                Filter::eq("Type", EventType::Attempt.as_str()),
            ]))
            .fields(["Key", "Attempted"])
    }

    /// Every event of an experiment (by its Key), whatever its type.
    pub fn experiment_events(experiment_key: &str) -> ListQuery {
        ListQuery::new().filter(Filter::link_contains("Experiment", experiment_key))
    }

    /// The first user with this `Name` (Users have no Key; the demo finds its coachee by name).
    pub fn user_named(name: &str) -> ListQuery {
        ListQuery::new()
            .filter(Filter::eq("Name", name))
            .max_records(1)
    }

    /// The first transcript with this `Title` (Transcripts have no Key; the demo finds its samples
    /// by title).
    pub fn transcript_titled(title: &str) -> ListQuery {
        ListQuery::new()
            .filter(Filter::eq("Title", title))
            .max_records(1)
    }

    /// The record with this `Key`, if any.
    pub fn by_key(key: &str) -> ListQuery {
        ListQuery::new()
            .filter(Filter::eq(crate::KEY_FIELD, key))
            .max_records(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BaseSchema;

    /// Every field name of every typed record exists in the schema with the select options the enum has.
    fn check<T: TableRecord + Default>(full: T) {
        let schema = BaseSchema::embedded().unwrap();
        let fields = full.to_fields();
        schema.validate_fields(T::TABLE, &fields).unwrap();
        let table = schema.table(T::TABLE).unwrap();
        assert_eq!(
            fields.len(),
            table.fields.len(),
            "{}: not every field is mapped",
            T::TABLE
        );
        let back = T::from_record(&Record {
            id: "rec0HLFTLAXuJ6suq".into(),
            created_time: String::new(),
            fields: fields.clone(),
        })
        .unwrap();
        assert_eq!(back.to_fields(), fields);
        assert_eq!(back.id(), "rec0HLFTLAXuJ6suq");
    }

    fn s(x: &str) -> Option<String> {
        Some(x.to_string())
    }
    fn l() -> Vec<RecordId> {
        vec![RecordId::parse("rec0HLFTLAXuJ6suq").unwrap()]
    }

    #[test]
    fn typed_records_match_the_schema() {
        check(User {
            id: String::new(),
            name: s("Ada"),
            email: s("a@example.com"),
            role: Some(Role::Coachee),
            coach: l(),
            active_experiment: l(),
        });
        check(Transcript {
            id: String::new(),
            title: s("t"),
            user: l(),
            meeting_date: s("2025-01-02"),
            format: Some(TranscriptFormat::Vtt),
            transcript: s("A: hi"),
            file: vec![Attachment {
                url: "https://v5.airtableusercontent.com/x".into(),
                ..Default::default()
            }],
            coachee_speaker: s("A"),
            parse_status: Some(ParseStatus::Parsed),
            parse_error: s("e"),
            parse_warnings: s("line 1 UNATTRIBUTED_TEXT: title"),
            segments: Some(3),
            words: Some(10),
        });
        check(RunRequest {
            id: String::new(),
            key: s("k"),
            user: l(),
            transcript: l(),
            status: Some(RunRequestStatus::Queued),
            run: l(),
            error: s("e"),
            source: Some(RunRequestSource::Make),
        });
        check(Run {
            id: String::new(),
            key: s("k"),
            run_type: Some(RunType::BaselinePack),
            user: l(),
            run_request: l(),
            baseline_pack: l(),
            transcripts: l(),
            status: Some(RunStatus::Succeeded),
            attempt: Some(1),
            replay_of: l(),
            provider: s("rules"),
            model: s("m"),
            prompt_version: s("v1"),
            input_tokens: Some(1),
            output_tokens: Some(2),
            cost_usd: Some(0.5),
            duration_ms: Some(3),
            gate1_passed: Some(true),
            gate1_report: s("{}"),
            output: s("{}"),
            coaching_card: s("# c"),
            metrics: s("{}"),
            error: s("e"),
            started_at: s("2025-01-02T03:04:05.000Z"),
            finished_at: s("2025-01-02T03:04:06.000Z"),
        });
        check(BaselinePack {
            id: String::new(),
            key: s("k"),
            name: s("n"),
            user: l(),
            transcripts: l(),
            status: Some(BaselinePackStatus::Ready),
            run: l(),
            experiment: l(),
            error: s("e"),
        });
        check(Experiment {
            id: String::new(),
            key: s("k"),
            title: s("t"),
            user: l(),
            baseline_pack: l(),
            source_run: l(),
            behavior: s("b"),
            success_signal: s("s"),
            target_meetings: Some(3),
            status: Some(ExperimentStatus::Active),
            started_at: s("2025-01-02T03:04:05.000Z"),
        });
        check(ExperimentEvent {
            id: String::new(),
            key: s("k"),
            experiment: l(),
            run: l(),
            event_type: Some(EventType::Attempt),
            attempted: Some(Attempted::Unclear),
            evidence: s("e"),
            occurred_at: s("2025-01-02T03:04:05.000Z"),
        });
    }

    #[test]
    fn a_malformed_link_fails_the_read_and_names_the_record() {
        let mut fields = Fields::new();
        fields.insert("Key".into(), "run:1".into());
        fields.insert(
            "Run Request".into(),
            serde_json::json!(["rec0HLFTLAXuJ6suq", "recBROKEN"]),
        );
        let err = Run::from_record(&Record {
            id: "rec1HLFTLAXuJ6suq".into(),
            created_time: String::new(),
            fields,
        })
        .unwrap_err();
        assert_eq!(err.code(), "STORE_DECODE");
        let message = err.to_string();
        assert!(message.contains("rec1HLFTLAXuJ6suq"), "{message}");
        assert!(message.contains("\"Runs\""), "{message}");
        assert!(message.contains("recBROKEN"), "{message}");
        // A link that is not text at all is as clear.
        let mut fields = Fields::new();
        fields.insert("Transcript".into(), serde_json::json!([42]));
        let err = RunRequest::from_record(&Record {
            id: "rec1HLFTLAXuJ6suq".into(),
            created_time: String::new(),
            fields,
        })
        .unwrap_err();
        assert_eq!(err.code(), "STORE_DECODE");
    }

    #[test]
    fn typed_updates_name_schema_fields_and_clear_with_null() {
        let schema = BaseSchema::embedded().unwrap();
        let update = RunRequestUpdate {
            status: Change::Set(RunRequestStatus::Done),
            run: Change::Set(l()),
            error: Change::Clear,
        };
        let fields = update.to_fields();
        schema.validate_fields(RUN_REQUESTS, &fields).unwrap();
        assert_eq!(
            Value::Object(fields),
            serde_json::json!({"Status": "Done", "Run": ["rec0HLFTLAXuJ6suq"], "Error": null})
        );
        let only_status = ExperimentUpdate {
            status: Change::Set(ExperimentStatus::Completed),
        };
        assert_eq!(
            Value::Object(only_status.to_fields()),
            serde_json::json!({"Status": "Completed"})
        );
        assert!(BaselinePackUpdate::default().to_fields().is_empty());
        let transcript = TranscriptUpdate {
            parse_status: Change::Set(ParseStatus::Parsed),
            parse_error: Change::Clear,
            parse_warnings: Change::Set("w".into()),
            segments: Change::Set(1),
            words: Change::Set(2),
        };
        schema
            .validate_fields(TRANSCRIPTS, &transcript.to_fields())
            .unwrap();
        let pack = BaselinePackUpdate {
            status: Change::Set(BaselinePackStatus::Ready),
            run: Change::Set(l()),
            experiment: Change::Set(l()),
            error: Change::Clear,
        };
        schema
            .validate_fields(BASELINE_PACKS, &pack.to_fields())
            .unwrap();
        let user = UserUpdate {
            active_experiment: Change::Set(vec![]),
        };
        schema.validate_fields(USERS, &user.to_fields()).unwrap();
        for table in Table::ALL {
            assert!(schema.table(table.as_str()).is_some(), "{table}");
        }
    }

    #[test]
    fn queries_name_schema_fields() {
        let schema = BaseSchema::embedded().unwrap();
        let cases = [
            (RUN_REQUESTS, queries::queued_run_requests()),
            (EXPERIMENT_EVENTS, queries::attempt_events("k")),
            (EXPERIMENT_EVENTS, queries::experiment_events("k")),
            (USERS, queries::user_named("n")),
            (TRANSCRIPTS, queries::transcript_titled("t")),
            (RUNS, queries::by_key("k")),
        ];
        for (table, query) in cases {
            let t = schema.table(table).unwrap();
            let filter = query.filter.as_ref().expect("every query filters");
            let named = filter
                .fields()
                .into_iter()
                .chain(query.fields.iter().map(String::as_str));
            for field in named {
                assert!(t.field(field).is_some(), "{table} has no field {field}");
            }
        }
    }

    #[test]
    fn enums_cover_the_schema_options() {
        let schema = BaseSchema::embedded().unwrap();
        let opts = |t: &str, f: &str| -> Vec<String> {
            schema
                .table(t)
                .unwrap()
                .field(f)
                .unwrap()
                .choices()
                .into_iter()
                .map(String::from)
                .collect()
        };
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            opts(RUNS, "Status"),
            names(
                &RunStatus::ALL
                    .iter()
                    .map(|x| x.as_str())
                    .collect::<Vec<_>>()
            )
        );
        assert_eq!(
            opts(RUNS, "Type"),
            names(&RunType::ALL.iter().map(|x| x.as_str()).collect::<Vec<_>>())
        );
        assert_eq!(
            opts(BASELINE_PACKS, "Status"),
            names(
                &BaselinePackStatus::ALL
                    .iter()
                    .map(|x| x.as_str())
                    .collect::<Vec<_>>()
            )
        );
        assert_eq!(
            opts(EXPERIMENT_EVENTS, "Attempted"),
            names(
                &Attempted::ALL
                    .iter()
                    .map(|x| x.as_str())
                    .collect::<Vec<_>>()
            )
        );
        let empty = Run::from_record(&Record {
            id: "rec0HLFTLAXuJ6suq".into(),
            created_time: String::new(),
            fields: Fields::new(),
        })
        .unwrap();
        assert_eq!(empty.status, None);
        assert!(empty.transcripts.is_empty());
    }
}
