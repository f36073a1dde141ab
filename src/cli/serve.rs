//! `dosod serve`: run the HTTP API on the configured bundle.

use anyhow::Result;

use super::shared::load_store;
use crate::config::{ServerArgs, Settings};

pub fn run(settings: &Settings, args: &ServerArgs) -> Result<std::process::ExitCode> {
    let mut server = settings.server.clone();
    args.apply(&mut server);
    let store = load_store(settings)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("dosod-http")
        .build()?;
    runtime.block_on(async {
        let state = crate::server::AppState::new(store, server)?;
        crate::server::serve(state).await
    })?;
    Ok(std::process::ExitCode::SUCCESS)
}
