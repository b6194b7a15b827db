//! A throwaway PostgreSQL cluster shared by every test in a test binary: initdb into a fresh directory under /tmp,
//! start it on a free loopback port, and stop and delete it when the test process exits (however it exits).
//! Each harness then gets its own database in it, so parallel tests stay isolated.
//!
//! Running as root (as the tests do here and in CI), initdb and the server must run as the `postgres` OS user:
//! they refuse to run as root.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The role tests use as the application (not the owner, not a superuser).
pub const APP_ROLE: &str = "ice_app";
/// The bootstrap superuser (initdb -U), which also owns each test ledger's schema.
pub const OWNER: &str = "postgres";

/// One running cluster.
pub struct Cluster {
    /// The loopback TCP port it listens on.
    pub port: u16,
    /// The directory holding the data directory and the unix socket.
    pub dir: PathBuf,
    /// The server's parent: stops it and deletes `dir` once this process has exited (see `start_once`).
    _supervisor: Child,
}

static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();
static NEXT_DB: AtomicU64 = AtomicU64::new(1);

/// The shared cluster, started on first use. Panics with the reason if it cannot start.
pub fn cluster() -> &'static Cluster {
    match CLUSTER.get_or_init(start) {
        Ok(c) => c,
        Err(e) => panic!("cannot start the throwaway PostgreSQL cluster: {e}"),
    }
}

impl Cluster {
    /// A URL for `user` on database `db` over loopback TCP.
    pub fn url(&self, user: &str, db: &str) -> String {
        format!("postgres://{user}@127.0.0.1:{}/{db}", self.port)
    }

    /// A fresh, empty database (each harness gets its own, so parallel tests never share a ledger).
    pub fn create_database(&self) -> String {
        let name = format!("ice_test_{}", NEXT_DB.fetch_add(1, Ordering::SeqCst));
        self.exec(OWNER, "postgres", &format!("CREATE DATABASE {name}")).expect("create database");
        name
    }

    /// Runs `sql` (one or more statements) as `user` on `db`, with a raw driver connection that bypasses ICE.
    pub fn exec(&self, user: &str, db: &str, sql: &str) -> Result<(), tokio_postgres::Error> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("test runtime");
        rt.block_on(async {
            let (client, connection) = tokio_postgres::connect(&self.url(user, db), tokio_postgres::NoTls).await?;
            tokio::spawn(connection);
            client.batch_execute(sql).await
        })
    }
}

/// The newest PostgreSQL server binaries: `$ICE_PG_BIN`, else the highest `/usr/lib/postgresql/<v>/bin`.
fn find_bin() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("ICE_PG_BIN") {
        let bin = PathBuf::from(dir);
        if bin.join("initdb").is_file() && bin.join("pg_ctl").is_file() {
            return Ok(bin);
        }
        return Err(format!("ICE_PG_BIN={} holds no initdb and pg_ctl", bin.display()));
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("pg_ctl").is_file()).then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin).ok_or_else(|| {
        "no PostgreSQL server binaries under /usr/lib/postgresql/*/bin (initdb, pg_ctl): install the Debian \
         `postgresql` package (scripts/test does this), or point ICE_PG_BIN at a bin directory"
            .to_owned()
    })
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// A command running `program` as the `postgres` OS user when we are root, else as ourselves.
fn as_server_user(program: &Path, root: bool) -> Command {
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn run(mut cmd: Command, what: &str) -> Result<(), String> {
    let out = cmd.stdin(Stdio::null()).output().map_err(|e| format!("cannot run {what}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn free_port() -> Result<u16, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free port: {e}"))?;
    listener.local_addr().map(|a| a.port()).map_err(|e| format!("no free port: {e}"))
}

fn start() -> Result<Cluster, String> {
    let bin = find_bin()?;
    let root = is_root();
    let mut errors = Vec::new();
    // A second try only helps if the server could not come up (say, another process took the port meanwhile).
    for attempt in 0..3 {
        match start_once(&bin, root, attempt) {
            Ok(cluster) => return Ok(cluster),
            Err((retry, e)) => {
                errors.push(e);
                if !retry {
                    break;
                }
            }
        }
    }
    Err(errors.join("\n---\n"))
}

/// Error and whether another attempt may succeed.
type Attempt = Result<Cluster, (bool, String)>;

fn start_once(bin: &Path, root: bool, attempt: u32) -> Attempt {
    let fatal = |e: String| (false, e);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let dir = PathBuf::from(format!("/tmp/ice-pg-test-{}-{nanos}-{attempt}", std::process::id()));
    std::fs::create_dir(&dir).map_err(|e| fatal(format!("cannot create {}: {e}", dir.display())))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| fatal(format!("cannot chmod {}: {e}", dir.display())))?;
    }
    let data = dir.join("data");
    let log = dir.join("server.log");
    let port = free_port().map_err(fatal)?;
    let as_user = if root { "runuser -u postgres -- " } else { "" };
    // fsync=off only because this cluster is thrown away: a production ledger keeps fsync on, or an acknowledged
    // append could be lost on power failure.
    let server = format!(
        "{as_user}'{postgres}' -D '{data}' -k '{dir}' -p {port} -c listen_addresses=127.0.0.1 -c fsync=off \
         -c full_page_writes=off -c max_connections=300",
        postgres = bin.join("postgres").display(),
        data = data.display(),
        dir = dir.display(),
    );
    // The supervisor owns the server (so the server is reaped, not left a zombie) and outlives this process by
    // exactly as long as it takes to stop it and delete the directory: it waits for EOF on its stdin, which the
    // kernel delivers when this process exits, however it exits. `setsid` and the trap keep it alive through a
    // Ctrl-C aimed at the test's process group. It is started before initdb, so even a failure below cleans up.
    let script = format!(
        "trap '' INT TERM HUP
         if read -r go; then
             {server} >>'{log}' 2>&1 &
             cat >/dev/null
             {as_user}'{pg_ctl}' -D '{data}' -m immediate stop >/dev/null 2>&1
             wait
         fi
         rm -rf '{dir}'",
        log = log.display(),
        pg_ctl = bin.join("pg_ctl").display(),
        data = data.display(),
        dir = dir.display(),
    );
    let mut supervisor = Command::new("setsid")
        .args(["sh", "-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| fatal(format!("cannot start the supervisor process: {e}")))?;

    if root {
        let mut chown = Command::new("chown");
        chown.arg("postgres:postgres").arg(&dir);
        run(chown, "chown (is there a `postgres` OS user?)").map_err(fatal)?;
    }
    let mut initdb = as_server_user(&bin.join("initdb"), root);
    initdb.arg("-D").arg(&data).args(["-A", "trust", "-U", OWNER, "--no-sync", "-E", "UTF8", "--locale=C"]);
    run(initdb, "initdb").map_err(fatal)?;

    // initdb is done: tell the supervisor to start the server.
    {
        use std::io::Write;
        let stdin = supervisor.stdin.as_mut().ok_or_else(|| fatal("the supervisor has no stdin".into()))?;
        stdin.write_all(b"go\n").and_then(|()| stdin.flush()).map_err(|e| fatal(format!("supervisor: {e}")))?;
    }
    let cluster = Cluster { port, dir, _supervisor: supervisor };
    // Wait for the server's own word that it is up (connecting earlier would log a FATAL "starting up"
    // refusal, indistinguishable in the log from a real failure). Dropping `cluster` on failure closes the
    // supervisor's stdin: it stops whatever started and cleans up.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("ready to accept connections") {
            break;
        }
        if text.contains("FATAL") || text.contains("PANIC") || std::time::Instant::now() >= deadline {
            return Err((true, format!("the server on port {port} did not come up; its log:\n{text}")));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    cluster
        .exec(OWNER, "postgres", &format!("CREATE ROLE {APP_ROLE} LOGIN"))
        .map_err(|e| (false, format!("cannot create the application role: {e}")))?;
    Ok(cluster)
}
