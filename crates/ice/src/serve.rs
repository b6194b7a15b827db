//! `ice serve`: opens this home's runtime once, for the life of the process, and serves it over HTTP until
//! SIGTERM or SIGINT; then drains and signs a final checkpoint (see `ice_server::Server::serve`).

use std::sync::Arc;

use ice_core::ErrorCode;
use ice_runtime::IceHome;
use ice_server::{ProofSettings, Server};

use crate::exit;
use crate::render::CliError;

/// Serves until a termination signal.
pub fn run(home: &IceHome, listen: Option<&str>, log_json: bool) -> Result<u8, CliError> {
    let mut cfg = home.config().server.clone();
    if let Some(l) = listen {
        cfg.listen = l.to_owned();
    }
    init_logs(log_json || cfg.log_format == "json");
    let started = std::time::Instant::now();
    let rt = Arc::new(home.open_runtime()?);
    let proof =
        ProofSettings { trusted_keys: home.pinned_keys()?, tail_bound: home.config().runtime.unsigned_tail_bound() };
    let server = Server::new(rt.clone(), cfg.clone(), proof);
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("ice-serve").build().map_err(|e| {
            CliError::Coded(ErrorCode::StoreUnavailable, format!("cannot start the async runtime: {e}"))
        })?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&cfg.listen).await.map_err(|e| {
            CliError::Coded(
                ErrorCode::BadConfig,
                format!("cannot listen on {}: {e} ([server] listen, --listen)", cfg.listen),
            )
        })?;
        let addr = listener.local_addr().map_or_else(|_| cfg.listen.clone(), |a| a.to_string());
        tracing::info!(addr = %addr, store = %rt.store().describe(), head = rt.with_state_cached(|s| s.last_seq().0),
            ready_ms = started.elapsed().as_millis() as u64, "ice serve listening");
        // One line on stderr that scripts (and the tests) wait for, whatever the log format.
        eprintln!("ice serve: listening on http://{addr}");
        server
            .serve(listener, shutdown_signal())
            .await
            .map_err(|e| CliError::Coded(ErrorCode::StoreUnavailable, format!("server failed: {e}")))
    })?;
    eprintln!("ice serve: stopped");
    Ok(exit::OK)
}

/// SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let term = async {
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = term => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

fn init_logs(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ICE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr);
    let _ = if json { builder.json().try_init() } else { builder.try_init() };
}
