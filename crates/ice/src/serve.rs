//! `ice serve`: opens this home's runtime once, for the life of the process, and serves it over HTTP until
//! SIGTERM or SIGINT; then drains and signs a final checkpoint (see `ice_server::Server::serve`).

use std::sync::Arc;

use ice_core::ErrorCode;
use ice_runtime::IceHome;
use ice_runtime::server_config::ServerConfig;
use ice_server::{ProofSettings, Server};

use crate::exit;
use crate::render::CliError;

/// Serves until a termination signal.
pub fn run(home: &IceHome, listen: Option<&str>, log_json: bool) -> Result<u8, CliError> {
    let mut cfg = home.config().server.clone();
    if let Some(l) = listen {
        cfg.listen = l.to_owned();
    }
    // Held to the end: dropping it sends the last spans.
    let _traces = init_logs(log_json || cfg.log_format == "json", &cfg)?;
    let started = std::time::Instant::now();
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("ice-serve").build().map_err(|e| {
            CliError::Coded(ErrorCode::StoreUnavailable, format!("cannot start the async runtime: {e}"))
        })?;
    let mut rt = home.open_runtime()?;
    // With .ice/mcp.toml, the MCP gateway is served at /mcp too (its upstreams started here).
    let mcp = runtime.block_on(crate::mcp::prepare(home, &mut rt))?;
    let rt = Arc::new(rt);
    let proof = ProofSettings {
        trusted_keys: home.pinned_keys()?,
        tail_bound: home.config().runtime.unsigned_tail_bound(),
        witness: cfg.witness_state.as_ref().map(|p| (home.dir().join(p), cfg.witness_key.clone())),
    };
    let server = Server::new(rt.clone(), cfg.clone(), proof);
    let mcp_stop = tokio_util::sync::CancellationToken::new();
    let server = match mcp {
        Some((upstreams, results)) => {
            server.with_mcp(crate::mcp::http_service(rt.clone(), upstreams, results, mcp_stop.clone())?)
        }
        None => server,
    };
    let (server, scheme) = with_tls(server, home, &cfg)?;
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
        eprintln!("ice serve: listening on {scheme}://{addr}");
        server
            .serve(listener, async move {
                shutdown_signal().await;
                mcp_stop.cancel();
            })
            .await
            .map_err(|e| CliError::Coded(ErrorCode::StoreUnavailable, format!("server failed: {e}")))
    })?;
    eprintln!("ice serve: stopped");
    Ok(exit::OK)
}

/// HTTPS when `[server] tls_cert` and `tls_key` are set (paths relative to `.ice/`); the scheme served.
fn with_tls(server: Server, home: &IceHome, cfg: &ServerConfig) -> Result<(Server, &'static str), CliError> {
    let bad = |m: String| CliError::Coded(ErrorCode::BadConfig, format!("[server] {m}"));
    match (&cfg.tls_cert, &cfg.tls_key) {
        (None, None) => Ok((server, "http")),
        (Some(cert), Some(key)) => {
            #[cfg(feature = "tls")]
            {
                let tls = ice_server::Tls::load(&home.dir().join(cert), &home.dir().join(key)).map_err(bad)?;
                Ok((server.with_tls(tls), "https"))
            }
            #[cfg(not(feature = "tls"))]
            {
                let _ = (home, cert, key);
                Err(bad("tls_cert is set but this ice was built without the `tls` feature".into()))
            }
        }
        _ => Err(bad("tls_cert and tls_key go together: set both, or neither for plain HTTP".into())),
    }
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

/// Logs on stderr (text or JSON lines, filtered by `ICE_LOG`, default `info`), and OTLP trace export when
/// `[server] otlp_endpoint` is set.
fn init_logs(json: bool, cfg: &ServerConfig) -> Result<Option<ice_server::otlp::OtlpGuard>, CliError> {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = tracing_subscriber::EnvFilter::try_from_env("ICE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt::layer().with_ansi(ansi).with_writer(std::io::stderr);
    let fmt = if json { fmt.json().boxed() } else { fmt.boxed() };
    let (otlp, guard) = match cfg.otlp_endpoint.as_deref().filter(|e| !e.is_empty()) {
        Some(endpoint) => {
            let (layer, guard) = ice_server::otlp::layer(endpoint, &cfg.otlp_service_name)
                .map_err(|e| CliError::Coded(ErrorCode::BadConfig, format!("[server] {e}")))?;
            // Only the server's own spans (a request, its runtime calls): not every library's.
            let only_ours = tracing_subscriber::filter::filter_fn(|m| m.target().starts_with("ice_server"));
            (Some(layer.with_filter(only_ours)), Some(guard))
        }
        None => (None, None),
    };
    let _ = tracing_subscriber::registry().with(fmt.with_filter(filter)).with(otlp).try_init();
    Ok(guard)
}
