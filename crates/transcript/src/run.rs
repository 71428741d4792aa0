//! What a coaching run analyses: one meeting or a baseline pack of three ([`RunType`]).
//!
//! The run type lives here, at the bottom of the workspace, because it is a property of the
//! meetings being analysed and three crates speak of it: the store writes it into the Runs
//! table's `Type` select, the coaching crate numbers span ids by it, and the worker branches on
//! it. The store and the coaching crate must not depend on each other; this crate is below both
//! (it depends on neither, and on nothing heavier than serde and the document readers), so one
//! type here replaces a copy in each. The serde names are the Airtable select options and the
//! JSON values (`single_meeting`, `baseline_pack`); the store's schema test checks them against
//! the base.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What is analysed: one meeting, or a baseline pack of three.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum RunType {
    /// One meeting; span ids `S12`.
    #[default]
    #[serde(rename = "single_meeting")]
    SingleMeeting,
    /// Three meetings; span ids `T1.S12`..`T3.S12`.
    #[serde(rename = "baseline_pack")]
    BaselinePack,
}

impl RunType {
    /// Every run type, in the order of the Runs table's `Type` options.
    pub const ALL: &'static [RunType] = &[RunType::SingleMeeting, RunType::BaselinePack];

    /// The wire name (`single_meeting` / `baseline_pack`): JSON, the select option, the CLI value.
    pub const fn as_str(self) -> &'static str {
        match self {
            RunType::SingleMeeting => "single_meeting",
            RunType::BaselinePack => "baseline_pack",
        }
    }

    /// How many transcripts a run of this type takes.
    pub const fn meeting_count(self) -> usize {
        match self {
            RunType::SingleMeeting => 1,
            RunType::BaselinePack => 3,
        }
    }
}

impl fmt::Display for RunType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_names_are_the_wire_names() {
        for &t in RunType::ALL {
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(json, format!("\"{}\"", t.as_str()));
            assert_eq!(serde_json::from_str::<RunType>(&json).unwrap(), t);
            assert_eq!(t.to_string(), t.as_str());
        }
        assert_eq!(
            serde_json::to_string(&RunType::BaselinePack).unwrap(),
            "\"baseline_pack\""
        );
        assert!(serde_json::from_str::<RunType>("\"baseline-pack\"").is_err());
        assert_eq!(RunType::default(), RunType::SingleMeeting);
        assert_eq!(RunType::BaselinePack.meeting_count(), 3);
    }
}
