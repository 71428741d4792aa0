//! coach-transcript: meeting transcript parsers and conversation metrics.
#![allow(missing_docs)]

pub mod cli;
mod coachee;
pub mod label;
pub mod metrics;
pub mod model;
mod parse;
mod render;
pub(crate) mod text;

pub use coachee::find_coachee;
pub use model::{Format, Segment, Transcript, TranscriptError};
pub use parse::{detect, parse};
pub use render::render;
