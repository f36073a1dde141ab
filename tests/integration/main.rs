//! The integration suite: one test binary whose modules mirror the product. Every test runs the
//! real `dosod` binary (or the library's engine and vocabulary layers) on generated bundles,
//! against real peers: HTTP clients, ffmpeg, mosquitto, an RTSP server, Cyclone DDS, Chromium.

mod cli;
mod common;
mod engine;
mod http;
mod ros2;
mod streams;
mod vocab;
mod web;
