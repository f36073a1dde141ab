//! `dosod serve`: run the HTTP API on the configured bundle.

use anyhow::Result;

use super::shared::load_store;
use crate::config::{ServerArgs, Settings};

pub fn run(settings: &Settings, args: &ServerArgs) -> Result<std::process::ExitCode> {
    let mut server = settings.server.clone();
    args.apply(&mut server);
    let store = load_store(settings)?;
    // HTTP parsing and fast refusals must not starve inference on small CPUs: the async
    // threads get half the cores (decoding runs on the blocking pool, inference on its own).
    let http_threads = match server.http_threads {
        0 => (crate::runtime::physical_cores() / 2).max(1),
        n => n,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(http_threads)
        .enable_all()
        .thread_name("dosod-http")
        .build()?;
    runtime.block_on(async {
        let state = crate::server::AppState::new(store, server)?;
        crate::server::serve(state).await
    })?;
    Ok(std::process::ExitCode::SUCCESS)
}
