//! Parse + metrics of a two-hour, ~20,000-word meeting built from the fixtures.
//! Target: median <= 3 ms for parse + metrics. Run: `cargo bench -p coach-transcript --bench parse_metrics`.

#[path = "../tests/common/meeting.rs"]
mod meeting;

use std::hint::black_box;
use std::time::Duration;

use coach_transcript::{Format, metrics, parse, render};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn bench(c: &mut Criterion) {
    let vtt = meeting::two_hour_vtt();
    let t = parse(vtt.as_bytes(), Format::Vtt).expect("fixture meeting parses");
    let json = render(&t, Format::Json);
    let text = render(&t, Format::Text);
    let mut g = c.benchmark_group("two_hour_meeting");
    g.measurement_time(Duration::from_secs(5)).sample_size(60);
    for (name, input, format) in [
        ("vtt", &vtt, Format::Auto),
        ("json", &json, Format::Auto),
        ("text", &text, Format::Auto),
    ] {
        g.throughput(Throughput::Bytes(input.len() as u64));
        g.bench_function(format!("parse_and_metrics_{name}"), |b| {
            b.iter(|| {
                let t = parse(black_box(input.as_bytes()), format).expect("parses");
                black_box(metrics::compute(&t))
            })
        });
    }
    g.throughput(Throughput::Bytes(vtt.len() as u64));
    g.bench_function("parse_only_vtt", |b| {
        b.iter(|| parse(black_box(vtt.as_bytes()), Format::Vtt).expect("parses"))
    });
    g.bench_function("metrics_only", |b| {
        b.iter(|| metrics::compute(black_box(&t)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
