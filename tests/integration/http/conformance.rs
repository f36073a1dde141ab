//! The OpenAPI document against the server: a bounded, seeded schemathesis run (positive and
//! negative cases, every check but one that needs decodable images) must find no difference
//! (issue 15 item 7).

use std::process::Command;

use crate::common::*;

#[test]
fn schemathesis_finds_no_difference_between_the_document_and_the_server() {
    let st = root().join(".venv/bin/schemathesis");
    assert!(
        st.exists(),
        "{} is missing: `make test` installs python/requirements/test.txt into .venv",
        st.display()
    );
    let s = Server::start("random", &["--api-key", "conformance-key"]);
    let reports = tempfile::tempdir().unwrap();
    let out = Command::new(&st)
        // schemathesis keeps a `.schemathesis/` folder in its working directory.
        .current_dir(reports.path())
        .args([
            "run",
            &s.url("/api-doc/openapi.json"),
            "--checks",
            "all",
            // Whether a schema-valid request is accepted depends on more than a schema can say:
            // the image must decode, phrases must fit the tokenizer, a template holds `{}` once.
            // Every other check runs, negative cases included.
            "--exclude-checks",
            "positive_data_acceptance",
            "--max-examples",
            "20",
            "--seed",
            "15",
            "--workers",
            "1",
            "--request-timeout",
            "60",
            "--generation-database",
            "none",
            "--no-color",
            "--header",
            "Authorization: Bearer conformance-key",
            "--report-dir",
        ])
        .arg(reports.path())
        .output()
        .expect("run schemathesis");
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(out.status.success(), "schemathesis failed:\n{text}");
    // The run tested the operations (it did not stop at the document).
    assert!(
        text.contains("passed") && !text.contains("No operations"),
        "{text}"
    );
}
