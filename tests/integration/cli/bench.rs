//! `dosod bench` reports every stage, the bare session.run and their ratio.

use crate::common::*;

#[test]
fn bench_reports_stages_and_ratio() {
    let o = dosod([
        "bench",
        "--model",
        path_str(&bundle("random")),
        "--image",
        path_str(&fixture("images/zidane.jpg")),
        "--runs",
        "3",
        "--warmup",
        "1",
        "--json",
    ]);
    let r = &json_lines(&o)[0];
    for stage in [
        "decode",
        "preprocess",
        "inference",
        "postprocess",
        "end_to_end",
        "bare_session_run",
    ] {
        let median = r[stage]["median"].as_f64().unwrap();
        let p90 = r[stage]["p90"].as_f64().unwrap();
        assert!(median > 0.0 && p90 >= median, "{stage}: {median} {p90}");
    }
    let e2e = r["end_to_end"]["median"].as_f64().unwrap();
    let bare = r["bare_session_run"]["median"].as_f64().unwrap();
    assert!((r["ratio"].as_f64().unwrap() - e2e / bare).abs() < 1e-9);
    assert_eq!(r["runs"], 3);

    let table = dosod([
        "bench",
        "--model",
        path_str(&bundle("random")),
        "--runs",
        "2",
        "--warmup",
        "0",
    ]);
    assert!(table.status.success(), "{}", stderr(&table));
    assert!(stdout(&table).contains("end-to-end / bare session.run ="));
}
