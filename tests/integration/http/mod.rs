//! `dosod serve` through real HTTP, one file per group of routes: detection, vocabularies,
//! bad input, API keys, operations, shutdown.

mod auth;
mod bad_input;
mod conformance;
mod connections;
mod detect;
mod operations;
mod shutdown;
mod vocabularies;

pub(crate) use std::time::Duration;

pub(crate) use reqwest::blocking::{Client, multipart};
pub(crate) use serde_json::Value;

use crate::common::*;

pub fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

pub fn image_bytes(name: &str) -> Vec<u8> {
    std::fs::read(fixture(&format!("images/{name}"))).unwrap()
}

pub fn form(image: &[u8], fields: &[(&str, &str)]) -> multipart::Form {
    let mut f = multipart::Form::new().part(
        "image",
        multipart::Part::bytes(image.to_vec())
            .file_name("x.jpg")
            .mime_str("image/jpeg")
            .unwrap(),
    );
    for (k, v) in fields {
        f = f.text(k.to_string(), v.to_string());
    }
    f
}

pub fn json(resp: reqwest::blocking::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let body = resp.text().unwrap();
    (
        status,
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}")),
    )
}

pub fn dets(v: &Value) -> Vec<(String, f64, [f64; 4])> {
    detections(v)
}

pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("metric {name} missing"))
}
