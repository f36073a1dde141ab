//! Helpers for the integration tests: run the real `dosod` binary on the generated bundles.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A generated test bundle (made by `make setup`).
pub fn bundle(name: &str) -> PathBuf {
    let dir = root().join("models/generated").join(name);
    assert!(
        dir.join("model.toml").is_file(),
        "{} is missing: run `make setup` first",
        dir.display()
    );
    dir
}

pub fn fixture(rel: &str) -> PathBuf {
    let p = root().join("tests/fixtures").join(rel);
    assert!(p.is_file(), "missing fixture {}", p.display());
    p
}

pub fn generated(rel: &str) -> PathBuf {
    let p = root().join("models/generated").join(rel);
    assert!(p.is_file(), "missing {}: run `make setup`", p.display());
    p
}

/// `dosod ARGS...` run from the repository root with a clean environment for its config.
pub fn dosod<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    Command::new(env!("CARGO_BIN_EXE_dosod"))
        .args(args)
        .current_dir(root())
        .env_remove("DOSOD_MODEL")
        .env_remove("DOSOD_CONFIG")
        .output()
        .expect("run dosod")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts success and parses one JSON object per stdout line.
pub fn json_lines(o: &Output) -> Vec<Value> {
    assert!(
        o.status.success(),
        "dosod failed: {}\n{}",
        o.status,
        stderr(o)
    );
    stdout(o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON {l}: {e}")))
        .collect()
}

/// Asserts a clean failure: non-zero exit, exactly one `error:` line, no panic.
pub fn assert_clean_failure(o: &Output, needle: &str) {
    let err = stderr(o);
    assert!(
        !o.status.success(),
        "expected failure, got success: {}",
        stdout(o)
    );
    assert_eq!(o.status.code(), Some(1), "exit code: {err}");
    assert!(!err.contains("panicked"), "panic: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line, got: {err}");
    assert!(lines[0].starts_with("error: "), "{err}");
    assert!(
        lines[0].to_lowercase().contains(&needle.to_lowercase()),
        "`{needle}` not in: {err}"
    );
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// The detections of one report as (label, score, box).
pub fn detections(report: &Value) -> Vec<(String, f64, [f64; 4])> {
    detection_rows(&report["detections"])
}

/// A JSON list of detections as (label, score, box).
pub fn detection_rows(list: &Value) -> Vec<(String, f64, [f64; 4])> {
    list.as_array()
        .expect("detections array")
        .iter()
        .map(|d| {
            let b: Vec<f64> = d["box"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            (
                d["label"].as_str().unwrap().to_string(),
                d["score"].as_f64().unwrap(),
                [b[0], b[1], b[2], b[3]],
            )
        })
        .collect()
}

/// A running `dosod serve` on an ephemeral port; killed on drop.
pub struct Server {
    pub child: std::process::Child,
    pub base: String,
}

impl Server {
    /// Starts the server with extra flags and waits until it listens (and is ready).
    pub fn start(model: &str, extra: &[&str]) -> Server {
        Server::start_at(&bundle(model), extra)
    }

    /// The same for a bundle directory anywhere (e.g. `models/demo`).
    pub fn start_at(model: &Path, extra: &[&str]) -> Server {
        use std::io::BufRead;
        let mut child = Command::new(env!("CARGO_BIN_EXE_dosod"))
            .args(["serve", "--port", "0", "--model", path_str(model)])
            .args(extra)
            .current_dir(root())
            .env_remove("DOSOD_MODEL")
            .env_remove("DOSOD_CONFIG")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("start dosod serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = std::io::BufReader::new(stdout).lines();
        let base = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(url) = line.strip_prefix("listening on ") {
                        break url.trim().to_string();
                    }
                }
                _ => panic!("dosod serve exited before listening"),
            }
        };
        // keep draining stdout so the server never blocks on a full pipe
        std::thread::spawn(move || for _ in lines {});
        Server { child, base }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        let status = self.child.wait().expect("wait");
        std::mem::forget(self);
        status
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
