//! Reaching the server: parsing the libpq-style URL, describing the target without its password, the connection
//! pool with bounded waits, and turning driver errors into [`StoreError::Unavailable`] messages that name the
//! server they were about.

use std::error::Error as _;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime};
use ice_store::StoreError;
use tokio_postgres::config::Host;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Config, NoTls, Row};

const DEFAULT_PORT: u16 = 5432;

/// Parses a `postgres://user[:password]@host:port/dbname` URL or a `host=... port=... dbname=...` string.
pub(crate) fn parse_config(url: &str, connect_timeout: Duration) -> Result<Config, StoreError> {
    // The driver's parse errors never echo the input, so a password in the URL cannot leak through them.
    let mut config: Config = url.parse().map_err(|e: tokio_postgres::Error| {
        StoreError::Unavailable(format!(
            "cannot parse the PostgreSQL connection string ({}); expected \
             postgres://user[:password]@host:port/dbname or `host=... port=... user=... dbname=...`",
            pg_error(&e)
        ))
    })?;
    if config.get_hosts().is_empty() && config.get_hostaddrs().is_empty() {
        return Err(StoreError::Unavailable(
            "the PostgreSQL connection string names no host; add one (postgres://user@host:5432/dbname, or \
             host=/path/to/socket-dir for a unix socket)"
                .into(),
        ));
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(connect_timeout);
    }
    if config.get_application_name().is_none() {
        config.application_name("ice");
    }
    Ok(config)
}

/// `postgres://user@host:port/dbname` (unix socket directories as `?host=/dir&port=N`), never the password.
pub(crate) fn describe(config: &Config) -> String {
    let user = config.get_user().unwrap_or_default();
    let dbname = config.get_dbname().unwrap_or(user);
    let ports = config.get_ports();
    let port = |i: usize| ports.get(i).or(ports.first()).copied().unwrap_or(DEFAULT_PORT);
    let mut tcp = Vec::new();
    let mut sockets = Vec::new();
    for (i, host) in config.get_hosts().iter().enumerate() {
        match host {
            Host::Tcp(name) if name.contains(':') => tcp.push(format!("[{name}]:{}", port(i))),
            Host::Tcp(name) => tcp.push(format!("{name}:{}", port(i))),
            Host::Unix(dir) => sockets.push(format!("host={}&port={}", dir.display(), port(i))),
        }
    }
    if config.get_hosts().is_empty() {
        for (i, addr) in config.get_hostaddrs().iter().enumerate() {
            match addr {
                std::net::IpAddr::V4(a) => tcp.push(format!("{a}:{}", port(i))),
                std::net::IpAddr::V6(a) => tcp.push(format!("[{a}]:{}", port(i))),
            }
        }
    }
    let mut out = format!("postgres://{user}@{}/{dbname}", tcp.join(","));
    if !sockets.is_empty() {
        out.push('?');
        out.push_str(&sockets.join("&"));
    }
    out
}

/// One line for a driver error: the server's message and SQLSTATE, or the client-side cause chain.
pub(crate) fn pg_error(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut s = format!("{}: {} (SQLSTATE {})", db.severity(), db.message(), db.code().code());
        if let Some(detail) = db.detail() {
            s.push_str(&format!("; {detail}"));
        }
        if let Some(hint) = db.hint() {
            s.push_str(&format!("; hint: {hint}"));
        }
        return s;
    }
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(&format!(": {c}"));
        cause = c.source();
    }
    s
}

fn pool_error(e: &PoolError) -> String {
    match e {
        PoolError::Backend(e) => pg_error(e),
        other => other.to_string(),
    }
}

/// What every task needs to talk to the ledger: the pool, a printable target and the per-operation deadline.
#[derive(Clone)]
pub(crate) struct Db {
    pool: Pool,
    target: Arc<str>,
    timeout: Duration,
}

impl Db {
    /// A pool over `config`; connections are made lazily, on first use, inside the store's runtime.
    pub(crate) fn new(config: Config, pool_size: usize, timeout: Duration) -> Result<Self, StoreError> {
        let target: Arc<str> = describe(&config).into();
        let connect = config.get_connect_timeout().copied();
        let manager = Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(timeout))
            .create_timeout(connect)
            .recycle_timeout(connect)
            .build()
            .map_err(|e| StoreError::Unavailable(format!("cannot build a connection pool for {target}: {e}")))?;
        Ok(Self { pool, target, timeout })
    }

    /// The printable target, e.g. `postgres://ice@db:5432/ledger`.
    pub(crate) fn target(&self) -> &str {
        &self.target
    }

    /// The deadline for one operation (getting a connection, then running it).
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// An error naming the target: `{what} {target}: {detail}`.
    pub(crate) fn unavailable(&self, what: &str, detail: impl std::fmt::Display) -> StoreError {
        StoreError::Unavailable(format!("{what} {}: {detail}", self.target))
    }

    /// A pooled connection, or a clear error naming the server once the connect/wait timeouts have passed.
    pub(crate) async fn client(&self) -> Result<Object, StoreError> {
        self.pool.get().await.map_err(|e| self.unavailable("cannot connect to", pool_error(&e)))
    }

    /// Runs one prepared (and cached) query within the operation deadline.
    pub(crate) async fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, StoreError> {
        let client = self.client().await?;
        let run = async {
            let statement = client.prepare_cached(sql).await?;
            client.query(&statement, params).await
        };
        let outcome = tokio::time::timeout(self.timeout, run).await;
        match outcome {
            Ok(Ok(rows)) => Ok(rows),
            Ok(Err(e)) => Err(self.unavailable("cannot read", pg_error(&e))),
            Err(_) => {
                // The server may still be working on the abandoned query: close this connection rather than
                // hand it to the next caller.
                drop(Object::take(client));
                Err(self.unavailable("cannot read", format!("no answer within {:?}", self.timeout)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{describe, parse_config};

    #[test]
    fn describe_hides_the_password() {
        let c = parse_config("postgres://ice:s3cret@db.example:6543/ledger", Duration::from_secs(1)).unwrap();
        assert_eq!(describe(&c), "postgres://ice@db.example:6543/ledger");
        let c =
            parse_config("host=/run/pg port=5433 user=ice password=s3cret dbname=l", Duration::from_secs(1)).unwrap();
        assert_eq!(describe(&c), "postgres://ice@/l?host=/run/pg&port=5433");
        let c = parse_config("postgres://ice@[::1]/l", Duration::from_secs(1)).unwrap();
        assert_eq!(describe(&c), "postgres://ice@[::1]:5432/l");
    }

    #[test]
    fn bad_urls_are_refused_without_echoing_them() {
        let err = parse_config("postgres://ice:s3cret@db:notaport/l", Duration::from_secs(1)).unwrap_err();
        assert!(!err.to_string().contains("s3cret"), "{err}");
        assert!(parse_config("user=ice dbname=l", Duration::from_secs(1)).is_err(), "no host");
    }
}
