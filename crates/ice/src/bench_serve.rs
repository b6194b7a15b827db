//! `ice bench serve`: propose → decision over HTTP on loopback (keep-alive connections, bearer tokens, the real
//! server), at fixed offered rates and flat out, against the in-process `Runtime::propose` of the same build and
//! ledger in the same run. Latency at a fixed rate is measured from each request's *scheduled* send time, so a
//! server that falls behind shows it (no coordinated omission); the client's own timer slack (tokio wakes timers
//! on a 1 ms wheel) is not counted.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ice_core::{ErrorCode, Roles};
use ice_runtime::server_config::ServerConfig;
use ice_server::{ProofSettings, Server};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::bench::{bench_err, summarize};
use crate::bench_propose::Fixture;
use crate::exit;
use crate::render::CliError;

/// Runs the benchmark.
pub fn run(rates: &[u32], seconds: f64, clients: usize) -> Result<u8, CliError> {
    if rates.contains(&0) || clients == 0 || !seconds.is_finite() || seconds <= 0.0 {
        return Err(CliError::Coded(
            ErrorCode::BadArgument,
            "--rates takes positive requests/s (e.g. 500,1000,2000), --clients and --seconds positive numbers".into(),
        ));
    }
    let fx = Fixture::new("full", clients)?;
    // In-process baseline: the same proposal through `Runtime::propose`, one caller, then `clients` callers.
    let (one_rate, one_p50, one_p99, _) =
        crate::bench_propose::level(&fx.rt, &fx.agents[..1], seconds, &|i| fx.input(i))?;
    let (many_rate, _, _, _) = crate::bench_propose::level(&fx.rt, &fx.agents, seconds, &|i| fx.input(i))?;
    let mut tokens = Vec::with_capacity(clients);
    for i in 0..clients {
        let principal = format!("agent:bench-{i}").parse()?;
        tokens.push(fx.rt.issue_token(&fx.operator, &principal, "agent".parse::<Roles>()?, None, None)?.1);
    }
    let bodies: Vec<String> = (0..64)
        .map(|i| {
            let p = fx.input(i);
            serde_json::json!({"run": p.run, "action": p.action, "resource": p.resource,
                "args": serde_json::from_str::<serde_json::Value>(&p.args).unwrap_or_default(),
                "cost_estimate": {"calls": 1}})
            .to_string()
        })
        .collect();
    let Fixture { rt, dir, .. } = fx;
    let rt = Arc::new(rt);
    let cfg = ServerConfig {
        listen: "127.0.0.1:0".into(),
        rate_per_token: 0,
        max_concurrent_requests: 4096,
        reconcile_every_secs: 0,
        ..ServerConfig::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(bench_err)?;
    println!(
        "ice bench serve: POST /v1/proposals (fs.write allowed by grant + Cedar + budget, 5 events, fsync'd) over \
         loopback HTTP/1.1 keep-alive, {clients} client connections, {seconds} s per step"
    );
    println!(
        "in-process propose (baseline, same ledger): 1 caller {one_rate:.0}/s p50 {:.2} ms p99 {:.2} ms; {clients} callers {many_rate:.0}/s",
        one_p50 / 1000.0,
        one_p99 / 1000.0
    );
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(bench_err)?;
        let addr = listener.local_addr().map_err(bench_err)?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = Server::new(rt.clone(), cfg, ProofSettings::default());
        let serving = tokio::spawn(server.serve(listener, async move {
            let _ = stopped.await;
        }));
        let bodies = Arc::new(bodies);
        // One sequential client: the per-request cost HTTP adds.
        let (_, seq_lat, _) = step(addr, &tokens[..1], &bodies, None, seconds.min(2.0)).await?;
        let (p50, p99) = summarize(&mut seq_lat.clone());
        println!(
            "1 client, sequential: p50 {:.2} ms p99 {:.2} ms  RATIO http p50 / in-process p50 {:.2}x",
            p50 / 1000.0,
            p99 / 1000.0,
            p50 / one_p50
        );
        for &rate in rates {
            let (done, mut lat, errors) = step(addr, &tokens, &bodies, Some(rate), seconds).await?;
            let (p50, p99) = summarize(&mut lat);
            println!(
                "offered {rate:>5}/s: achieved {:>7.0}/s  p50 {:>7.2} ms  p99 {:>7.2} ms{}",
                done as f64 / seconds,
                p50 / 1000.0,
                p99 / 1000.0,
                if errors > 0 { format!("  ({errors} errors)") } else { String::new() }
            );
        }
        let (done, mut lat, errors) = step(addr, &tokens, &bodies, None, seconds).await?;
        let (p50, p99) = summarize(&mut lat);
        let max = done as f64 / seconds;
        println!(
            "flat out ({clients} clients): {max:>7.0}/s  p50 {:.2} ms  p99 {:.2} ms  RATIO http / in-process ({clients} callers) {:.2}x{}",
            p50 / 1000.0,
            p99 / 1000.0,
            max / many_rate,
            if errors > 0 { format!("  ({errors} errors)") } else { String::new() }
        );
        let _ = stop.send(());
        serving.await.map_err(bench_err)?.map_err(bench_err)?;
        Ok::<(), CliError>(())
    })?;
    drop(dir);
    Ok(exit::OK)
}

/// How late a timer may wake before the delay is counted as the server's.
const TIMER_SLACK: Duration = Duration::from_millis(2);

/// One step: each client on its own keep-alive connection, paced at `rate / clients` when a rate is given, else
/// closed-loop. Returns requests answered 200, their latencies, and errors.
async fn step(
    addr: SocketAddr,
    tokens: &[String],
    bodies: &Arc<Vec<String>>,
    rate: Option<u32>,
    seconds: f64,
) -> Result<(usize, Vec<Duration>, usize), CliError> {
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(seconds);
    let interval = rate.map(|r| Duration::from_secs_f64(tokens.len() as f64 / f64::from(r)));
    let mut tasks = Vec::new();
    for (c, token) in tokens.iter().enumerate() {
        let (token, bodies) = (token.clone(), bodies.clone());
        // Clients start spread over one interval so the offered load is even.
        let offset = interval.map_or(Duration::ZERO, |i| i.mul_f64(c as f64 / tokens.len() as f64));
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::open(addr).await?;
            let (mut lat, mut errors, mut k) = (Vec::new(), 0usize, 0u32);
            loop {
                let scheduled = match interval {
                    Some(i) => start + offset + i * k,
                    None => Instant::now(),
                };
                if scheduled >= until {
                    break;
                }
                if scheduled > Instant::now() {
                    tokio::time::sleep_until(scheduled.into()).await;
                }
                // The timer wakes up to a millisecond late (tokio's resolution): that slack is the client's, not
                // the server's. Later than that, the client fell behind because the server did, and the wait counts.
                let sent = Instant::now();
                let from = if sent.duration_since(scheduled) > TIMER_SLACK { scheduled } else { sent };
                let body = &bodies[(k as usize + c) % bodies.len()];
                match conn.post("/v1/proposals", &token, body).await {
                    Ok(200) => lat.push(from.elapsed()),
                    Ok(_) => errors += 1,
                    Err(_) => {
                        errors += 1;
                        conn = Conn::open(addr).await?;
                    }
                }
                k += 1;
            }
            Ok::<_, std::io::Error>((lat, errors))
        }));
    }
    let (mut all, mut errors) = (Vec::new(), 0);
    for t in tasks {
        let (lat, e) = t.await.map_err(bench_err)?.map_err(bench_err)?;
        all.extend(lat);
        errors += e;
    }
    Ok((all.len(), all, errors))
}

/// A keep-alive HTTP/1.1 connection.
struct Conn {
    io: BufReader<tokio::net::TcpStream>,
}

impl Conn {
    async fn open(addr: SocketAddr) -> std::io::Result<Self> {
        let s = tokio::net::TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        Ok(Self { io: BufReader::new(s) })
    }

    /// Sends a POST and reads the whole response; returns the status.
    async fn post(&mut self, path: &str, token: &str, body: &str) -> std::io::Result<u16> {
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.io.get_mut().write_all(req.as_bytes()).await?;
        let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "bad response");
        let mut line = String::new();
        self.io.read_line(&mut line).await?;
        let status: u16 = line.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or_else(bad)?;
        let mut length = 0usize;
        loop {
            line.clear();
            if self.io.read_line(&mut line).await? == 0 {
                return Err(bad());
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse().map_err(|_| bad())?;
            }
        }
        let mut body = vec![0u8; length];
        self.io.read_exact(&mut body).await?;
        Ok(status)
    }
}
