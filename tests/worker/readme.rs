//! The README as a new user follows it: the binary its commands name is installed before they are
//! used, and what the tests need besides Rust is said next to the test command.

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap()
}

/// The lines of the README's ```sh blocks, in order.
fn shell_lines(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        if line.starts_with("```") {
            inside = line == "```sh";
            continue;
        }
        if inside {
            out.push(line.trim().to_owned());
        }
    }
    out
}

#[test]
fn the_install_step_comes_before_the_first_coach_worker_command() {
    let lines = shell_lines(&readme());
    let install = lines
        .iter()
        .position(|l| l == "cargo install --path .")
        .expect("the README gives the install step");
    let first_use = lines
        .iter()
        .position(|l| l.starts_with("coach-worker "))
        .expect("the README shows coach-worker commands");
    assert!(install < first_use, "{lines:#?}");
}

#[test]
fn the_test_prerequisites_are_next_to_the_test_command() {
    let text = readme();
    let end = text
        .find("<!-- /test-command -->")
        .expect("the test command block");
    let after: String = text[end..].lines().take(14).collect::<Vec<_>>().join("\n");
    for needed in [
        "chromium-driver",
        "`chromium`",
        "cargo-nextest",
        "../shared/data/",
        "MANIFEST.md",
    ] {
        assert!(
            after.contains(needed),
            "{needed} missing after the test command:\n{after}"
        );
    }
}
