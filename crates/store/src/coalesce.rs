//! Group sending: reads by id and writes (PATCH by id, upsert on `Key`) of one table that wait for
//! the rate limiter at the same time leave as one request of up to 10 records.
//!
//! Airtable's 5 requests/s per base is the worker's bottleneck when many jobs run at once, and each
//! job asks for one or two records at a time. The API takes up to 10 records per write request,
//! and a list filtered on `RECORD_ID()` answers several reads, so the requests that queue behind
//! the limiter anyway can share one slot. This is group commit over the rate limit: the first
//! caller of a kind (operation and table) opens a batch and waits for a slot; callers of the same
//! kind that arrive while it waits join the batch; when the slot comes the batch closes and leaves
//! as one request. A caller alone sends exactly the request it would send without batching, so a
//! quiet worker's traffic is unchanged, and nothing waits longer than it would for its own slot.
//!
//! A batch never holds two writes to one record (two PATCHes of one id, two upserts of one `Key`):
//! Airtable cannot apply both in one request, and their order would be lost. When a merged request
//! fails — a validation error of one caller's record fails the whole request, and the error names
//! no caller — every caller sends its own request again, so each gets its own answer and error
//! (all three operations are idempotent). A caller whose batch's leader was cancelled does the same.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value;
use tokio::sync::oneshot;

use crate::airtable::MAX_BATCH;
use crate::{Record, StoreError};

/// What a batch does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Op {
    /// Read records by id.
    Get,
    /// PATCH records by id.
    Update,
    /// PATCH with `performUpsert` on `Key`.
    Upsert,
}

/// One caller's part of a batch.
pub(crate) struct Part {
    /// The record ids (`Get`, `Update`) or `Key`s (`Upsert`) of the caller's records, in order.
    pub idents: Vec<String>,
    /// The records as the request body lists them (`{"id", "fields"}` or `{"fields"}`; none for `Get`).
    pub records: Vec<Value>,
}

/// What a caller gets back from its batch.
pub(crate) enum Answer {
    /// Its records as written or read, in the order of its `idents` (reads: the records found).
    Done(Result<Vec<Record>, StoreError>),
    /// The merged request failed or was abandoned: send your own request.
    Alone,
}

struct Entry {
    part: Part,
    reply: oneshot::Sender<Answer>,
}

struct Open {
    id: u64,
    entries: Vec<Entry>,
}

impl Open {
    fn records(&self) -> usize {
        self.entries.iter().map(|e| e.part.idents.len()).sum()
    }

    /// Whether `part` can join: room for its records, and (for writes) none of its records already in.
    fn admits(&self, op: Op, part: &Part) -> bool {
        if self.records() + part.idents.len() > MAX_BATCH {
            return false;
        }
        op == Op::Get
            || !self
                .entries
                .iter()
                .any(|e| e.part.idents.iter().any(|i| part.idents.contains(i)))
    }
}

/// The open batches of one client, by operation and table.
#[derive(Default)]
pub(crate) struct Batches {
    open: Mutex<HashMap<(Op, String), Vec<Open>>>,
    next: AtomicU64,
}

/// How a caller takes part.
pub(crate) enum Role<'a> {
    /// It opened the batch: it waits for the slot, then [`Lead::take`]s the batch and sends it.
    Lead(Lead<'a>, oneshot::Receiver<Answer>),
    /// It joined a batch another caller leads.
    Follow(oneshot::Receiver<Answer>),
}

impl Batches {
    /// Joins the open batch of `(op, table)` when it admits `part`, else opens a new one.
    pub(crate) fn join(&self, op: Op, table: &str, part: Part) -> Role<'_> {
        let (reply, answer) = oneshot::channel();
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let batches = open.entry((op, table.to_owned())).or_default();
        if let Some(last) = batches.last_mut()
            && last.admits(op, &part)
        {
            last.entries.push(Entry { part, reply });
            return Role::Follow(answer);
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        batches.push(Open {
            id,
            entries: vec![Entry { part, reply }],
        });
        Role::Lead(
            Lead {
                batches: self,
                key: (op, table.to_owned()),
                id,
                taken: false,
            },
            answer,
        )
    }
}

/// The leader's hold on its batch. Dropped before [`Lead::take`] (the leader was cancelled while it
/// waited for its slot), it closes the batch and its followers send alone.
pub(crate) struct Lead<'a> {
    batches: &'a Batches,
    key: (Op, String),
    id: u64,
    taken: bool,
}

impl Lead<'_> {
    /// Closes the batch (nobody joins any more) and returns its callers, the leader first.
    pub(crate) fn take(mut self) -> Closed {
        self.taken = true;
        Closed(self.remove())
    }

    fn remove(&self) -> Vec<Entry> {
        let mut open = self.batches.open.lock().unwrap_or_else(|e| e.into_inner());
        let Some(batches) = open.get_mut(&self.key) else {
            return Vec::new();
        };
        let entries = match batches.iter().position(|b| b.id == self.id) {
            Some(i) => batches.remove(i).entries,
            None => Vec::new(),
        };
        if batches.is_empty() {
            open.remove(&self.key);
        }
        entries
    }
}

impl Drop for Lead<'_> {
    fn drop(&mut self) {
        if !self.taken {
            // Dropping the entries drops their reply senders: the followers send alone.
            drop(self.remove());
        }
    }
}

/// A closed batch: its callers' parts, to send and answer.
pub(crate) struct Closed(Vec<Entry>);

impl Closed {
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    pub(crate) fn parts(&self) -> impl Iterator<Item = &Part> {
        self.0.iter().map(|e| &e.part)
    }

    /// Answers every caller with the one answer a lone caller gets.
    pub(crate) fn answer_one(mut self, result: Result<Vec<Record>, StoreError>) {
        if let Some(entry) = self.0.pop() {
            let _ = entry.reply.send(Answer::Done(result));
        }
        self.send_alone();
    }

    /// Tells every caller to send its own request.
    pub(crate) fn send_alone(self) {
        for entry in self.0 {
            let _ = entry.reply.send(Answer::Alone);
        }
    }

    /// Hands each caller its records out of a merged answer: by id for `Get` and `Update`, by `Key`
    /// for `Upsert`. A caller whose written records are not all in the answer sends alone (the
    /// answer does not show that its write happened); a read of an id the answer lacks is
    /// `NotFound`, as the lone GET would be.
    pub(crate) fn distribute(self, op: Op, table: &str, records: Vec<Record>) {
        let mut by_ident: HashMap<String, Record> = HashMap::with_capacity(records.len());
        for r in records {
            let ident = match op {
                Op::Get | Op::Update => r.id.clone(),
                Op::Upsert => match r.fields.get(crate::KEY_FIELD).and_then(Value::as_str) {
                    Some(k) => k.to_owned(),
                    None => continue,
                },
            };
            by_ident.insert(ident, r);
        }
        for entry in self.0 {
            let found: Vec<Option<Record>> = entry
                .part
                .idents
                .iter()
                .map(|i| by_ident.get(i).cloned())
                .collect();
            let answer = match op {
                Op::Get => Answer::Done(match found.iter().position(Option::is_none) {
                    Some(missing) => Err(StoreError::NotFound {
                        table: table.to_owned(),
                        id: entry.part.idents[missing].clone(),
                    }),
                    None => Ok(found.into_iter().flatten().collect()),
                }),
                Op::Update | Op::Upsert => match found.iter().all(Option::is_some) {
                    true => Answer::Done(Ok(found.into_iter().flatten().collect())),
                    false => Answer::Alone,
                },
            };
            let _ = entry.reply.send(answer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(idents: &[&str]) -> Part {
        Part {
            idents: idents.iter().map(|s| s.to_string()).collect(),
            records: Vec::new(),
        }
    }

    #[test]
    fn callers_join_until_ten_records_or_a_repeated_record() {
        let b = Batches::default();
        let Role::Lead(lead, _a) = b.join(Op::Update, "Runs", part(&["recA"])) else {
            panic!("the first caller leads");
        };
        let Role::Follow(_b) = b.join(Op::Update, "Runs", part(&["recB", "recC"])) else {
            panic!("a second caller joins");
        };
        // Another table or operation is another batch.
        assert!(matches!(
            b.join(Op::Update, "Users", part(&["recA"])),
            Role::Lead(..)
        ));
        assert!(matches!(
            b.join(Op::Get, "Runs", part(&["recA"])),
            Role::Lead(..)
        ));
        // The same record again cannot be written in the same request.
        let Role::Lead(second, _c) = b.join(Op::Update, "Runs", part(&["recB"])) else {
            panic!("a second write of recB opens a batch of its own");
        };
        // New callers join the newest open batch, up to ten records.
        let mut followers = Vec::new();
        for i in 0..9 {
            match b.join(Op::Update, "Runs", part(&[&format!("recX{i}")])) {
                Role::Follow(rx) => followers.push(rx),
                Role::Lead(..) => panic!("caller {i} should join"),
            }
        }
        assert!(matches!(
            b.join(Op::Update, "Runs", part(&["recY"])),
            Role::Lead(..)
        ));
        let first = lead.take();
        assert_eq!(first.len(), 2);
        assert_eq!(second.take().len(), 10);
    }

    #[test]
    fn reads_of_one_record_share_a_batch() {
        let b = Batches::default();
        let _lead = b.join(Op::Get, "Users", part(&["recA"]));
        assert!(matches!(
            b.join(Op::Get, "Users", part(&["recA"])),
            Role::Follow(_)
        ));
    }

    #[tokio::test]
    async fn a_dropped_leader_sends_its_followers_alone() {
        let b = Batches::default();
        let lead = b.join(Op::Upsert, "Runs", part(&["k1"]));
        let Role::Follow(rx) = b.join(Op::Upsert, "Runs", part(&["k2"])) else {
            panic!("joins");
        };
        drop(lead);
        assert!(rx.await.is_err(), "the follower learns the batch is gone");
        // The next caller leads a new batch.
        assert!(matches!(
            b.join(Op::Upsert, "Runs", part(&["k3"])),
            Role::Lead(..)
        ));
    }

    #[tokio::test]
    async fn a_merged_answer_goes_to_each_caller_by_id_or_key() {
        let b = Batches::default();
        let Role::Lead(lead, a) = b.join(Op::Upsert, "Runs", part(&["k1"])) else {
            panic!()
        };
        let Role::Follow(c) = b.join(Op::Upsert, "Runs", part(&["k2", "k3"])) else {
            panic!()
        };
        let record = |id: &str, key: &str| Record {
            id: id.into(),
            created_time: String::new(),
            fields: [(crate::KEY_FIELD.to_owned(), Value::from(key))]
                .into_iter()
                .collect(),
        };
        // The answer lists k3 before k2 and lacks nothing; k1 is there.
        lead.take().distribute(
            Op::Upsert,
            "Runs",
            vec![
                record("rec1", "k1"),
                record("rec3", "k3"),
                record("rec2", "k2"),
            ],
        );
        let Answer::Done(Ok(mine)) = a.await.unwrap() else {
            panic!()
        };
        assert_eq!(mine[0].id, "rec1");
        let Answer::Done(Ok(theirs)) = c.await.unwrap() else {
            panic!()
        };
        let ids: Vec<&str> = theirs.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["rec2", "rec3"], "in the caller's order");
    }
}
