//! Peak heap use of parse + metrics on the two-hour meeting stays under 10x the file size.
//! This test binary has its own counting global allocator and a single test, so nothing else
//! allocates while it measures.

#[path = "common/meeting.rs"]
mod meeting;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: defers to the system allocator and only adds bookkeeping.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

#[test]
fn two_hour_meeting_peak_memory_is_under_ten_times_file_size() {
    let vtt = meeting::two_hour_vtt();
    let words_before = CURRENT.load(Ordering::Relaxed);
    PEAK.store(words_before, Ordering::Relaxed);
    let t =
        coach_transcript::parse(vtt.as_bytes(), coach_transcript::Format::Auto).expect("parses");
    let m = coach_transcript::metrics::compute(&t);
    let peak = PEAK.load(Ordering::Relaxed) - words_before;
    let ratio = peak as f64 / vtt.len() as f64;
    println!(
        "file {} bytes, {} words, {} segments; peak extra heap {} bytes = {:.2}x file size",
        vtt.len(),
        m.total_words,
        t.segments.len(),
        peak,
        ratio
    );
    assert!(
        (19_000..=21_000).contains(&m.total_words),
        "{} words",
        m.total_words
    );
    assert!((7100.0..=7200.0).contains(&m.duration_seconds.unwrap_or(0.0)));
    assert!(ratio <= 10.0, "peak {ratio:.2}x file size");
}
