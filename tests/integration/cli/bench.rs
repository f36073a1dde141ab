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
        "--pipeline",
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
    // The random bundle takes 640x640: zidane (1280x720) decodes at 1/2 with reduced decoding.
    let reduced = &r["reduced"];
    assert_eq!(reduced["decoded"], "640x360");
    let reduced_e2e = reduced["end_to_end"]["median"].as_f64().unwrap();
    assert!((reduced["ratio"].as_f64().unwrap() - reduced_e2e / bare).abs() < 1e-9);
    let p = &r["pipeline"];
    for key in [
        "serial_fps",
        "pipelined_fps",
        "reduced_serial_fps",
        "reduced_pipelined_fps",
    ] {
        assert!(p[key].as_f64().unwrap() > 0.0, "{key}: {p}");
    }
    assert!((p["bare_fps"].as_f64().unwrap() - 1e3 / bare).abs() < 1e-6);
    let ratio = p["pipelined_fps"].as_f64().unwrap() / p["bare_fps"].as_f64().unwrap();
    assert!((p["pipelined_ratio"].as_f64().unwrap() - ratio).abs() < 1e-9);

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
    assert!(stdout(&table).contains("reduced JPEG decoding (to 640x360)"));
}
