//! The `.ice/` directory: configuration, the runtime key pair and the ledger location.
//!
//! ```text
//! .ice/
//!   config.toml          store URL and tuning (see README, Configuration)
//!   ledger.db            the SQLite ledger (default store)
//!   keys/runtime.key     ed25519 secret key, hex, mode 0600 (signs checkpoints)
//!   keys/runtime.pub     ed25519 public key, hex (also recorded in the LedgerInitialized event)
//!   keys/token.key       32-byte key, hex, mode 0600: token secrets are recorded only as keyed hashes under it
//!   keys/ledger.pub      the ledger's key as pinned when this home created or joined it
//!   policies/            Cedar policies, schema.cedarschema and policy.toml (activated by `ice init`)
//! ```

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ed25519_dalek::SigningKey;
use ice_core::{Clock, ErrorCode, IdSource};
use ice_store::{Store, StoreError};
use ice_store_sqlite::{SqliteOptions, SqliteStore, Synchronous};
use serde::{Deserialize, Serialize};

use crate::runtime::{Runtime, RuntimeError};
use crate::signer::{CheckpointSigner, KeySpec};
use crate::system::{SystemClock, SystemIds};

/// Name of the directory ICE keeps its files in.
pub const ICE_DIR: &str = ".ice";
/// Environment variable that overrides the configured store URL.
pub const STORE_ENV: &str = "ICE_STORE";

/// A configuration or setup failure, with a stable code.
#[derive(Debug, thiserror::Error)]
#[error("{code}: {message}")]
pub struct HomeError {
    /// Stable code.
    pub code: ErrorCode,
    /// What went wrong with which file or value.
    pub message: String,
}

impl HomeError {
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }
}

impl From<StoreError> for HomeError {
    fn from(e: StoreError) -> Self {
        Self::new(e.code(), e.to_string())
    }
}

impl From<RuntimeError> for HomeError {
    fn from(e: RuntimeError) -> Self {
        Self::new(e.code(), e.to_string())
    }
}

/// `.ice/config.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the ledger lives.
    pub store: StoreConfig,
    /// Runtime defaults.
    #[serde(default)]
    pub runtime: RuntimeConfig,
    /// Effectors: sandbox, allowlists, limits.
    #[serde(default)]
    pub effects: ice_effects::EffectsConfig,
    /// Local OS users and the principal and roles each one is (`[[users]]`).
    #[serde(default)]
    pub users: Vec<crate::caller::LocalUser>,
    /// `ice serve`: listen address and limits.
    #[serde(default)]
    pub server: crate::server_config::ServerConfig,
    /// Memory search: which embedder.
    #[serde(default)]
    pub memory: MemoryConfig,
}

/// The `[memory]` table.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryConfig {
    /// `hash` (default: deterministic, no model) or `minilm` (all-MiniLM-L6-v2; needs an `ice` built with the
    /// `minilm` feature and the weights from `scripts/fetch-minilm`). Changing it re-embeds every item at the next
    /// search; recorded reads name the embedder in their index version.
    #[serde(default)]
    pub embedder: Option<String>,
    /// The folder holding the model files (relative to `.ice/`; default `models/all-minilm-l6-v2`).
    #[serde(default)]
    pub model_dir: Option<PathBuf>,
}

/// The `[store]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `sqlite:PATH` (relative to `.ice/`) or `postgres://...`.
    pub url: String,
    /// SQLite durability: `full` (default), `normal` or `off`.
    #[serde(default = "default_synchronous")]
    pub synchronous: String,
    /// Most events sealed in one group-commit transaction.
    #[serde(default = "default_max_batch")]
    pub max_batch_events: usize,
}

/// The `[runtime]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Append a signed checkpoint after this many events (0: never by count).
    #[serde(default = "default_checkpoint_events")]
    pub checkpoint_every_events: u64,
    /// Append a signed checkpoint when this many seconds passed since the last one (0: never by time).
    #[serde(default = "default_checkpoint_secs")]
    pub checkpoint_every_secs: u64,
    /// How many state snapshots (one per checkpoint) to keep in `.ice/snapshots/`.
    #[serde(default = "default_keep_snapshots")]
    pub keep_snapshots: usize,
    /// More public keys (hex) whose checkpoint signatures `ice verify` accepts.
    #[serde(default)]
    pub trusted_keys: Vec<String>,
    /// `ice verify` fails when more events than this follow the last signed checkpoint (0: no bound). Default
    /// twice `checkpoint_every_events` when that is set, else 20,000.
    #[serde(default)]
    pub max_unsigned_tail: Option<u64>,
    /// How long after its start an effect of this instance without an outcome may be presumed unknown by instances
    /// on other machines, which cannot check whether this one is still running it. Default 900 (15 minutes): set
    /// it above your longest effect.
    #[serde(default = "default_outcome_deadline_secs")]
    pub outcome_deadline_secs: u64,
    /// Where the checkpoint signing key is: `file:PATH`, `fd:N` or `command:PROGRAM ARGS…` (see
    /// [`crate::signer`]). Default: `keys/runtime.key` in the home.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key: Option<String>,
}

impl RuntimeConfig {
    /// The bound on events after the last signed checkpoint that `ice verify` accepts (0: none).
    pub fn unsigned_tail_bound(&self) -> u64 {
        self.max_unsigned_tail.unwrap_or(if self.checkpoint_every_events > 0 {
            self.checkpoint_every_events.saturating_mul(2)
        } else {
            20_000
        })
    }
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            checkpoint_every_events: default_checkpoint_events(),
            checkpoint_every_secs: default_checkpoint_secs(),
            keep_snapshots: default_keep_snapshots(),
            trusted_keys: Vec::new(),
            max_unsigned_tail: None,
            outcome_deadline_secs: default_outcome_deadline_secs(),
            signing_key: None,
        }
    }
}

fn default_checkpoint_events() -> u64 {
    2_000
}
fn default_outcome_deadline_secs() -> u64 {
    crate::boundary::DEFAULT_OUTCOME_DEADLINE_SECS.unsigned_abs()
}
fn default_checkpoint_secs() -> u64 {
    60
}
fn default_keep_snapshots() -> usize {
    2
}

fn default_synchronous() -> String {
    "full".to_owned()
}
fn default_max_batch() -> usize {
    2048
}

impl Config {
    /// The configuration `ice init` writes for a store URL.
    pub fn new(store_url: &str) -> Self {
        Self {
            store: StoreConfig {
                url: store_url.to_owned(),
                synchronous: default_synchronous(),
                max_batch_events: default_max_batch(),
            },
            runtime: RuntimeConfig::default(),
            effects: ice_effects::EffectsConfig::default(),
            users: Vec::new(),
            server: crate::server_config::ServerConfig::default(),
            memory: MemoryConfig::default(),
        }
    }
}

/// An initialised ICE home (the directory holding `.ice/`).
#[derive(Debug, Clone)]
pub struct IceHome {
    dir: PathBuf,
    config: Config,
}

impl IceHome {
    /// Finds the home: `explicit` if given (the directory containing `.ice/`), else the nearest ancestor of
    /// `cwd` that has `.ice/config.toml`.
    pub fn discover(explicit: Option<&Path>, cwd: &Path) -> Result<Self, HomeError> {
        let dir = match explicit {
            Some(d) => d.join(ICE_DIR),
            None => {
                cwd.ancestors().map(|a| a.join(ICE_DIR)).find(|d| d.join("config.toml").is_file()).ok_or_else(|| {
                    HomeError::new(
                        ErrorCode::NotInitialized,
                        format!("no {ICE_DIR}/ found in {} or any parent directory", cwd.display()),
                    )
                })?
            }
        };
        let path = dir.join("config.toml");
        let text = fs::read_to_string(&path).map_err(|e| {
            let code =
                if e.kind() == std::io::ErrorKind::NotFound { ErrorCode::NotInitialized } else { ErrorCode::BadConfig };
            HomeError::new(code, format!("cannot read {}: {e}", path.display()))
        })?;
        let config: Config = toml::from_str(&text)
            .map_err(|e| HomeError::new(ErrorCode::BadConfig, format!("{} is invalid: {e}", path.display())))?;
        for u in &config.users {
            u.validate().map_err(|r| HomeError::new(r.code, format!("{}: {}", path.display(), r.message)))?;
        }
        Ok(Self { dir, config })
    }

    /// Creates `DIR/.ice/` with configuration, key pair and an initialised ledger. Refuses an existing one.
    pub fn init(dir: &Path, store_url: Option<&str>) -> Result<(Self, Runtime), HomeError> {
        Self::init_with(dir, store_url, None)
    }

    /// [`IceHome::init`] with the signing key outside the home (`signing_key`: see [`crate::signer`]; a `file:`
    /// key that does not exist yet is created there, mode 0600).
    pub fn init_with(
        dir: &Path,
        store_url: Option<&str>,
        signing_key: Option<&str>,
    ) -> Result<(Self, Runtime), HomeError> {
        let ice = dir.join(ICE_DIR);
        if ice.join("config.toml").exists() {
            return Err(HomeError::new(
                ErrorCode::AlreadyInitialized,
                format!("{} already holds an ICE ledger", ice.display()),
            ));
        }
        if ice.join("keys").join("runtime.key").exists() {
            return Err(HomeError::new(
                ErrorCode::AlreadyInitialized,
                format!(
                    "{} is a partly initialised ICE directory (no config.toml); remove it and run `ice init` again",
                    ice.display()
                ),
            ));
        }
        let io = |what: &str, e: std::io::Error| HomeError::new(ErrorCode::StoreUnavailable, format!("{what}: {e}"));
        fs::create_dir_all(ice.join("keys")).map_err(|e| io(&format!("cannot create {}", ice.display()), e))?;
        // Only the owner reads the home: keys, ledger, config (other OS users, agents' among them, get nothing).
        private_dir(&ice).map_err(|e| io(&format!("cannot restrict {}", ice.display()), e))?;
        private_dir(&ice.join("keys")).map_err(|e| io("cannot restrict keys/", e))?;
        let url = store_url.map_or_else(|| "sqlite:ledger.db".to_owned(), str::to_owned);
        let mut config = Config::new(&url);
        config.runtime.signing_key = signing_key.map(str::to_owned);
        // The user who initialises the home is its first operator, with every role, and may act for agents (the
        // demo and README flows drive agents by hand).
        config.users.push(crate::caller::LocalUser::this_process(&format!("human:{}", login_name())));
        let text = format!(
            "# ICE configuration. See README.md, section Configuration.\n{}",
            toml::to_string_pretty(&config)
                .map_err(|e| HomeError::new(ErrorCode::BadConfig, format!("cannot encode config: {e}")))?
        );
        let public = match signing_key {
            None => write_key_pair(&ice.join("keys"))?,
            Some(spec) => external_key(&KeySpec::parse(spec, &ice)?, &ice.join("keys"))?,
        };
        write_private(&ice.join("keys").join("token.key"), &to_hex(&random_key()?))?;
        let home = Self { dir: ice.clone(), config };
        let policies = ice.join("policies");
        crate::policy::write_defaults(&policies)
            .map_err(|e| io(&format!("cannot write the default policies to {}", policies.display()), e))?;
        let runtime = home.open_runtime_unbound(Arc::new(SystemClock), Arc::new(SystemIds))?;
        // A shared (PostgreSQL) ledger may already be initialised by another instance: join it as it is.
        if runtime.with_state(|s| s.event_count())? == 0 {
            runtime.initialize(&public)?;
            runtime.activate_initial_policy(&policies)?;
            // Signed from the first moment: a ledger with no checkpoint at all is one `ice verify` refuses.
            runtime
                .checkpoint()
                .map_err(|e| HomeError::new(e.code(), format!("cannot sign the first checkpoint: {e}")))?;
        }
        // Pin the ledger's key (trust on first use when joining a shared ledger): `ice verify` checks checkpoint
        // signatures against it, not against whatever key the ledger itself claims later.
        let ledger_key = runtime.with_state(|s| s.ledger_key().map(str::to_owned))?.unwrap_or(public);
        fs::write(ice.join("keys").join("ledger.pub"), format!("{ledger_key}\n"))
            .map_err(|e| io("cannot write keys/ledger.pub", e))?;
        // Written last: until it exists, the directory does not count as initialised.
        write_private(&ice.join("config.toml"), text.trim_end())?;
        restrict_ledger_files(&ice);
        Ok((home, runtime))
    }

    /// The `.ice/` directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The loaded configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The store URL in force: `ICE_STORE` if set, else the configured one.
    pub fn store_url(&self) -> String {
        std::env::var(STORE_ENV).ok().filter(|s| !s.is_empty()).unwrap_or_else(|| self.config.store.url.clone())
    }

    /// Opens the configured store.
    pub fn open_store(&self) -> Result<Arc<dyn Store>, HomeError> {
        self.open_store_url(&self.store_url())
    }

    /// Opens a store by URL (`sqlite:PATH`, relative to `.ice/`, or `postgres://...`) with this home's tuning.
    pub fn open_store_url(&self, url: &str) -> Result<Arc<dyn Store>, HomeError> {
        let url = url.to_owned();
        let synchronous: Synchronous = self
            .config
            .store
            .synchronous
            .parse()
            .map_err(|e: String| HomeError::new(ErrorCode::BadConfig, format!("store.synchronous: {e}")))?;
        let options = SqliteOptions {
            synchronous,
            max_batch_events: self.config.store.max_batch_events,
            ..SqliteOptions::default()
        };
        if let Some(path) = url.strip_prefix("sqlite:") {
            let path = Path::new(path);
            let path = if path.is_absolute() { path.to_path_buf() } else { self.dir.join(path) };
            return Ok(SqliteStore::open(path, options)?);
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return self.open_postgres(&url);
        }
        Err(HomeError::new(
            ErrorCode::BadConfig,
            format!("store URL `{}` is not supported: use sqlite:PATH or postgres://USER@HOST:PORT/DB", redact(&url)),
        ))
    }

    #[cfg(feature = "postgres")]
    fn open_postgres(&self, url: &str) -> Result<Arc<dyn Store>, HomeError> {
        let options = ice_store_postgres::PostgresOptions {
            max_batch_events: self.config.store.max_batch_events,
            ..ice_store_postgres::PostgresOptions::default()
        };
        Ok(ice_store_postgres::PostgresStore::open(url, options)?)
    }

    #[cfg(not(feature = "postgres"))]
    fn open_postgres(&self, url: &str) -> Result<Arc<dyn Store>, HomeError> {
        Err(HomeError::new(
            ErrorCode::BadConfig,
            format!("`{}`: this ice was built without the `postgres` feature", redact(url)),
        ))
    }

    /// Opens the runtime over the configured store with the system clock and ids.
    pub fn open_runtime(&self) -> Result<Runtime, HomeError> {
        self.open_runtime_with(Arc::new(SystemClock), Arc::new(SystemIds))
    }

    /// Opens the runtime with an injected clock and id source.
    pub fn open_runtime_with(&self, clock: Arc<dyn Clock>, ids: Arc<dyn IdSource>) -> Result<Runtime, HomeError> {
        let rt = self.open_runtime_unbound(clock, ids)?;
        self.check_bound_to(&rt)?;
        Ok(rt)
    }

    /// [`IceHome::open_runtime_with`] before the home is bound to its ledger (`ice init`, which pins the key).
    fn open_runtime_unbound(&self, clock: Arc<dyn Clock>, ids: Arc<dyn IdSource>) -> Result<Runtime, HomeError> {
        let effectors = self.open_effectors()?;
        let store = self.open_store()?;
        let start = crate::snapshot::latest_valid(&*store, &self.snapshot_dir()).unwrap_or_default();
        let mut rt = Runtime::open_with_snapshot(store, clock, ids, start)?.with_effectors(Arc::new(effectors));
        rt.set_local_users(self.config.users.clone());
        rt.set_outcome_deadline_secs(self.config.runtime.outcome_deadline_secs);
        if let Some(embedder) = self.embedder()? {
            rt.set_embedder(embedder);
        }
        if let Some(key) = self.token_key()? {
            rt.set_token_key(key);
        }
        if let Some(key) = self.signing_key()? {
            rt.set_checkpoints(crate::checkpoints::CheckpointPolicy {
                key,
                every_events: self.config.runtime.checkpoint_every_events,
                every_secs: self.config.runtime.checkpoint_every_secs,
                snapshot_dir: Some(self.snapshot_dir()),
                keep_snapshots: self.config.runtime.keep_snapshots,
            });
        }
        Ok(rt)
    }

    /// The embedder `[memory] embedder` names (`None`: the default deterministic one). The model loads on first use,
    /// so commands that never search do not pay for it.
    fn embedder(&self) -> Result<Option<Arc<dyn ice_memory::Embedder>>, HomeError> {
        match self.config.memory.embedder.as_deref() {
            None | Some("hash") => Ok(None),
            Some("minilm") => self.minilm(),
            Some(other) => Err(HomeError::new(
                ErrorCode::BadConfig,
                format!("[memory] embedder = \"{other}\": expected \"hash\" or \"minilm\""),
            )),
        }
    }

    #[cfg(feature = "minilm")]
    fn minilm(&self) -> Result<Option<Arc<dyn ice_memory::Embedder>>, HomeError> {
        let dir =
            self.dir.join(self.config.memory.model_dir.clone().unwrap_or_else(|| "models/all-minilm-l6-v2".into()));
        Ok(Some(Arc::new(ice_memory::Lazy::new("all-minilm-l6-v2", 384, move || {
            ice_memory::MiniLm::load(&dir).map(|m| Arc::new(m) as Arc<dyn ice_memory::Embedder>)
        }))))
    }

    #[cfg(not(feature = "minilm"))]
    fn minilm(&self) -> Result<Option<Arc<dyn ice_memory::Embedder>>, HomeError> {
        Err(HomeError::new(
            ErrorCode::BadConfig,
            "[memory] embedder = \"minilm\" needs an ice built with the `minilm` feature \
             (cargo build --release --features minilm); or set embedder = \"hash\"",
        ))
    }

    /// A home belongs to one ledger: the one whose `LedgerInitialized` names the key this home pins
    /// (`keys/ledger.pub`, else `keys/runtime.pub`). Pointing the home at another ledger (`ICE_STORE`, `[store] url`)
    /// would run effects in this home's sandbox while recording them in that ledger, so it is refused.
    fn check_bound_to(&self, rt: &Runtime) -> Result<(), HomeError> {
        let Some(ledger_key) = rt.with_state_cached(|s| s.ledger_key().map(str::to_owned)) else { return Ok(()) };
        let keys = self.dir.join("keys");
        let home_key = ["ledger.pub", "runtime.pub"]
            .iter()
            .find_map(|name| fs::read_to_string(keys.join(name)).ok())
            .map(|k| k.trim().to_owned());
        match home_key {
            Some(k) if k == ledger_key => Ok(()),
            Some(k) => Err(HomeError::new(
                ErrorCode::BadConfig,
                format!(
                    "this home ({}) belongs to the ledger of key {k}, but the store {} holds the ledger of key \
                     {ledger_key}; check ICE_STORE and [store] url",
                    self.dir.display(),
                    rt.store().describe()
                ),
            )),
            None => Ok(()),
        }
    }

    /// Opens the runtime folding the whole ledger from its first event (no snapshot), for replay.
    pub fn open_runtime_unsnapshotted(&self) -> Result<Runtime, HomeError> {
        let mut rt = Runtime::open(self.open_store()?, Arc::new(SystemClock), Arc::new(SystemIds))?;
        rt.set_local_users(self.config.users.clone());
        if let Some(key) = self.token_key()? {
            rt.set_token_key(key);
        }
        Ok(rt)
    }

    /// The key token secrets are hashed under (`keys/token.key`), created on first use for homes made before
    /// tokens existed.
    pub fn token_key(&self) -> Result<Option<[u8; 32]>, HomeError> {
        let path = self.dir.join("keys").join("token.key");
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = random_key()?;
                write_private(&path, &to_hex(&key))?;
                return Ok(Some(key));
            }
            Err(e) => return Err(HomeError::new(ErrorCode::BadConfig, format!("cannot read {}: {e}", path.display()))),
        };
        let key: [u8; 32] =
            ice_core::checkpoint::from_hex(text.trim()).and_then(|b| b.try_into().ok()).ok_or_else(|| {
                HomeError::new(ErrorCode::BadConfig, format!("{} is not a 32-byte hex key", path.display()))
            })?;
        Ok(Some(key))
    }

    /// Where state snapshots are kept.
    pub fn snapshot_dir(&self) -> PathBuf {
        self.dir.join("snapshots")
    }

    /// Where this home's checkpoint signing key is (`[runtime] signing_key`, else `keys/runtime.key`).
    pub fn key_spec(&self) -> Result<KeySpec, HomeError> {
        match &self.config.runtime.signing_key {
            Some(spec) => KeySpec::parse(spec, &self.dir),
            None => Ok(KeySpec::File(self.dir.join("keys").join("runtime.key"))),
        }
    }

    /// What signs this home's checkpoints, if this process may use it (see [`crate::signer`]).
    pub fn signing_key(&self) -> Result<Option<CheckpointSigner>, HomeError> {
        CheckpointSigner::load(&self.key_spec()?)
    }

    /// The public keys `ice verify` trusts for checkpoint signatures: `keys/ledger.pub` (the key recorded when this
    /// home created or joined the ledger), else `keys/runtime.pub`, plus `[runtime] trusted_keys`.
    pub fn trusted_keys(&self) -> Result<Vec<String>, HomeError> {
        let keys = self.pinned_keys()?;
        if keys.is_empty() {
            return Err(HomeError::new(
                ErrorCode::NoPinnedKey,
                format!(
                    "no pinned key: neither {} nor [runtime] trusted_keys",
                    self.dir.join("keys/ledger.pub").display()
                ),
            ));
        }
        Ok(keys)
    }

    /// The pinned keys (`keys/ledger.pub`, else `keys/runtime.pub`, plus `[runtime] trusted_keys`), possibly none;
    /// a key file that exists but cannot be read or holds no key is an error, never skipped.
    pub fn pinned_keys(&self) -> Result<Vec<String>, HomeError> {
        let keys = self.dir.join("keys");
        let mut out = Vec::new();
        for name in ["ledger.pub", "runtime.pub"] {
            let path = keys.join(name);
            match fs::read_to_string(&path) {
                Ok(text) => {
                    let key = text.trim().to_owned();
                    if key.len() != 64 || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
                        return Err(HomeError::new(
                            ErrorCode::NoPinnedKey,
                            format!("{} does not hold a public key (64 hex digits)", path.display()),
                        ));
                    }
                    out.push(key);
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                // A pinned key that cannot be read is never silently skipped: that would verify against nothing.
                Err(e) => {
                    return Err(HomeError::new(
                        ErrorCode::NoPinnedKey,
                        format!("the pinned key {} cannot be read: {e}", path.display()),
                    ));
                }
            }
        }
        out.extend(self.config.runtime.trusted_keys.iter().cloned());
        Ok(out)
    }

    /// The configured effectors: sandbox relative to the directory holding `.ice/`, blobs and journal inside `.ice/`.
    pub fn open_effectors(&self) -> Result<ice_effects::Effectors, HomeError> {
        let base = self.dir.parent().unwrap_or(&self.dir);
        ice_effects::Effectors::new(&self.config.effects, base, &self.dir)
            .map_err(|e| HomeError::new(e.code, format!("effectors: {}", e.message)))
    }

    /// The runtime public key (hex).
    pub fn public_key(&self) -> Result<String, HomeError> {
        let path = self.dir.join("keys").join("runtime.pub");
        fs::read_to_string(&path)
            .map(|s| s.trim().to_owned())
            .map_err(|e| HomeError::new(ErrorCode::BadConfig, format!("cannot read {}: {e}", path.display())))
    }
}

/// A store URL with any password replaced, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// 32 random bytes from the OS.
fn random_key() -> Result<[u8; 32], HomeError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed)
        .map_err(|e| HomeError::new(ErrorCode::StoreUnavailable, format!("no OS randomness for a key: {e}")))?;
    Ok(seed)
}

/// The login name of this process's user, as a principal name: its `/etc/passwd` entry (by uid, not the
/// environment), else `$USER`, else `uid<N>`; restricted to the characters principal names allow.
fn login_name() -> String {
    let uid = crate::caller::process_uid();
    let from_passwd = fs::read_to_string("/etc/passwd").ok().and_then(|t| {
        t.lines().find_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            (f.nth(1)?.parse::<u32>().ok()? == uid).then(|| name.to_owned())
        })
    });
    let raw = from_passwd
        .or_else(|| std::env::var("USER").ok())
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| format!("uid{uid}"));
    let name: String = raw
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '-') { c } else { '_' })
        .take(64)
        .collect();
    if name.is_empty() { "operator".to_owned() } else { name }
}

/// Mode 0700 on a directory.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Mode 0600 on the SQLite ledger files that exist (SQLite gives its WAL and shared-memory files the database's
/// mode); best effort.
fn restrict_ledger_files(ice: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for name in ["ledger.db", "ledger.db-wal", "ledger.db-shm"] {
            let path = ice.join(name);
            if path.exists() {
                let _ = fs::set_permissions(&path, fs::Permissions::from_mode(0o600));
            }
        }
    }
}

/// The signer a `--signing-key` spec names (a `file:` key is created when missing); writes its public key to
/// `keys/runtime.pub` and returns it. No secret is written into the home.
fn external_key(spec: &KeySpec, keys: &Path) -> Result<String, HomeError> {
    let signer = match (spec, CheckpointSigner::load(spec)?) {
        (_, Some(s)) => s,
        (KeySpec::File(path), None) if !path.exists() => crate::signer::create_key_file(path, random_key()?)?,
        (_, None) => {
            return Err(HomeError::new(
                ErrorCode::BadConfig,
                format!(
                    "the signing key {spec:?} cannot be read by this process, which must sign the first checkpoint"
                ),
            ));
        }
    };
    let public = signer.public_hex();
    fs::write(keys.join("runtime.pub"), format!("{public}\n"))
        .map_err(|e| HomeError::new(ErrorCode::StoreUnavailable, format!("cannot write the public key: {e}")))?;
    Ok(public)
}

/// Generates the runtime ed25519 key pair; returns the public key in hex.
fn write_key_pair(keys: &Path) -> Result<String, HomeError> {
    let seed = random_key()?;
    let signing = SigningKey::from_bytes(&seed);
    let public = to_hex(signing.verifying_key().as_bytes());
    let secret_path = keys.join("runtime.key");
    write_private(&secret_path, &to_hex(&seed))?;
    fs::write(keys.join("runtime.pub"), format!("{public}\n"))
        .map_err(|e| HomeError::new(ErrorCode::StoreUnavailable, format!("cannot write the public key: {e}")))?;
    Ok(public)
}

fn write_private(path: &Path, contents: &str) -> Result<(), HomeError> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    opts.mode(0o600);
    let mut f = opts
        .open(path)
        .map_err(|e| HomeError::new(ErrorCode::StoreUnavailable, format!("cannot create {}: {e}", path.display())))?;
    writeln!(f, "{contents}")
        .map_err(|e| HomeError::new(ErrorCode::StoreUnavailable, format!("cannot write {}: {e}", path.display())))
}
