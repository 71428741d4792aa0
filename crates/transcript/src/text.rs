//! Text helpers shared by the parsers and the metrics.

/// Whitespace-separated word count, without allocating.
pub fn count_words(s: &str) -> usize {
    s.split_ascii_whitespace().count()
}
