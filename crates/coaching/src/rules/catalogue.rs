//! The experiment catalogue: one experiment per main growth pattern ([`experiment_for`]), and the
//! way back from an experiment's text to the behaviour the metrics can judge ([`classify`]).

use crate::model::ActiveExperiment;

/// One experiment from the catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CatalogueExperiment {
    /// Title.
    pub title: &'static str,
    /// The behaviour to try.
    pub behavior: &'static str,
    /// How the coachee knows it worked.
    pub success_signal: &'static str,
    /// Meetings to try it in.
    pub target_meetings: u32,
}

/// What a pattern is about; keys the experiment catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatternKey {
    /// Talks far above fair share.
    Dominates,
    /// Talks far below fair share.
    Quiet,
    /// Very long turns.
    Monologue,
    /// Rarely asks questions.
    FewQuestions,
    /// Many fillers and hedges.
    Hedging,
    /// Interrupts often.
    Interrupts,
    /// Asks questions (strength).
    AsksQuestions,
    /// Invites others (strength).
    Invites,
    /// Balanced airtime (strength).
    Balanced,
    /// Direct language (strength).
    Direct,
    /// Fallback strength.
    Engaged,
}

/// The experiment proposed when `main_growth` is the main growth pattern (`None`: no growth
/// pattern fired, so a stretch experiment).
pub fn experiment_for(main_growth: Option<PatternKey>) -> CatalogueExperiment {
    let e = |title, behavior, success_signal, target_meetings| CatalogueExperiment {
        title,
        behavior,
        success_signal,
        target_meetings,
    };
    match main_growth {
        Some(PatternKey::Dominates) => e(
            "Speak last",
            "In each meeting, let at least two others give their view before you give yours, then build on what they said.",
            "Your talk share stays within 10 points of a fair share (1 / number of speakers).",
            3,
        ),
        Some(PatternKey::Monologue) => e(
            "Two-minute turns",
            "Keep each turn under two minutes: after your main point, stop and ask a check-in question before going on.",
            "Your longest turn is under two minutes (about 300 words) and others answer your check-ins.",
            3,
        ),
        Some(PatternKey::FewQuestions) => e(
            "Three open questions",
            "Ask at least three open questions (what, how, why) in each meeting before proposing a solution.",
            "At least three of your turns contain a question, and the answers shape the decision.",
            3,
        ),
        Some(PatternKey::Hedging) => e(
            "Land the point",
            "Open each key contribution with your recommendation in one plain sentence, without 'I think', 'maybe' or 'just'.",
            "Fewer than 2 fillers or hedges per 100 words, and your recommendations are restated by others.",
            3,
        ),
        Some(PatternKey::Interrupts) => e(
            "Let them land",
            "Wait until the other person has finished and count to two before you come in; if you must, ask to interrupt.",
            "At most one interruption per meeting.",
            3,
        ),
        Some(PatternKey::Quiet) => e(
            "Early voice",
            "Contribute one point or question in the first ten minutes of each meeting.",
            "Your talk share reaches at least half a fair share and others respond to your point.",
            3,
        ),
        _ => e(
            "Invite dissent",
            "Before closing a decision, ask the quietest participant for a concern or an alternative.",
            "In each meeting at least one invited question brings in someone who had not spoken yet.",
            3,
        ),
    }
}

/// The measurable behaviour an experiment asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Fewer interruptions.
    Interruptions,
    /// Speaking up early.
    EarlyVoice,
    /// Shorter turns.
    TurnLength,
    /// Fewer fillers and hedges.
    Hedging,
    /// Less airtime.
    Airtime,
    /// Inviting others.
    Invitations,
    /// More questions.
    Questions,
    /// Not mapped.
    Unknown,
}

/// Maps an experiment's title and behaviour text to the behaviour the metrics can judge.
/// Checked in this order because texts mention several things ("ask a check-in question" is
/// about turn length, "one point or question early" about speaking up).
pub fn classify(exp: &ActiveExperiment) -> Behaviour {
    let text = format!("{} {}", exp.title, exp.behavior).to_lowercase();
    let any = |ws: &[&str]| ws.iter().any(|w| text.contains(w));
    if any(&["interrupt", "let them land", "count to two"]) {
        Behaviour::Interruptions
    } else if any(&[
        "early voice",
        "first ten minutes",
        "speak up",
        "early in the meeting",
    ]) {
        Behaviour::EarlyVoice
    } else if any(&[
        "monologue",
        "two-minute",
        "two minutes",
        "check-in",
        "concise",
        "shorter turn",
    ]) {
        Behaviour::TurnLength
    } else if any(&[
        "hedge",
        "filler",
        "land the point",
        "plain sentence",
        "recommendation first",
    ]) {
        Behaviour::Hedging
    } else if any(&[
        "speak last",
        "airtime",
        "talk share",
        "fair share",
        "talk less",
    ]) {
        Behaviour::Airtime
    } else if any(&[
        "invite",
        "quiet",
        "dissent",
        "include",
        "inclusion",
        "everyone",
    ]) {
        Behaviour::Invitations
    } else if any(&["question"]) {
        Behaviour::Questions
    } else {
        Behaviour::Unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_catalogue_experiment_maps_to_its_own_behaviour() {
        let cases = [
            (Some(PatternKey::Dominates), Behaviour::Airtime),
            (Some(PatternKey::Monologue), Behaviour::TurnLength),
            (Some(PatternKey::FewQuestions), Behaviour::Questions),
            (Some(PatternKey::Hedging), Behaviour::Hedging),
            (Some(PatternKey::Interrupts), Behaviour::Interruptions),
            (Some(PatternKey::Quiet), Behaviour::EarlyVoice),
            (None, Behaviour::Invitations),
        ];
        for (key, want) in cases {
            let e = experiment_for(key);
            let exp = ActiveExperiment {
                title: e.title.into(),
                behavior: e.behavior.into(),
                success_signal: e.success_signal.into(),
            };
            assert_eq!(classify(&exp), want, "{}", e.title);
        }
        let odd = ActiveExperiment {
            title: "Walk more".into(),
            behavior: "Take a walk".into(),
            success_signal: String::new(),
        };
        assert_eq!(classify(&odd), Behaviour::Unknown);
    }
}
