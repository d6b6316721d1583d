//! Command-line flags, each with an environment variable fallback (`wsbroker --help` lists them).
//!
//! Owns: the broker's settings and their defaults. Must not: act on them; modules read what they need.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::directory::MAX_SHARDS;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// A sharded WebSocket chat broker whose state is owned by shard threads, without locks.
#[derive(Debug, Clone, Parser)]
#[command(name = "wsbroker", version, about)]
pub struct Config {
    /// A TOML file of settings, keyed by these flags' names; flags and environment variables win
    /// over it (`wsbroker config` prints what is in effect).
    #[arg(long, env = "WSBROKER_CONFIG")]
    pub config: Option<std::path::PathBuf>,

    /// Address to listen on, for WebSocket and HTTP alike.
    #[arg(long, env = "LISTEN_ADDR", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    /// Shard tasks that own the connections [default: number of cores, at most 64].
    #[arg(long, env = "SHARDS", value_parser = clap::value_parser!(u16).range(1..=MAX_SHARDS as i64))]
    pub shards: Option<u16>,

    /// Threads for accepting and HTTP; connections are served on the shard threads.
    #[arg(long, env = "HTTP_THREADS", default_value_t = 1, value_parser = clap::builder::TypedValueParser::map(clap::value_parser!(u16).range(1..=64), usize::from))]
    pub http_threads: usize,

    /// Frames a connection may have queued, beyond a write buffer (--ws-write-buffer bytes), before
    /// it is closed 1008 as a slow consumer.
    #[arg(long, env = "SEND_BUFFER", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub send_buffer: u32,

    /// Largest client message in bytes, after reassembly; bigger ones close the connection 1009.
    #[arg(long, env = "MAX_FRAME", default_value_t = 65_536)]
    pub max_frame: usize,

    /// Most characters (Unicode scalar values) in `data.content`.
    #[arg(long, env = "MAX_CONTENT", default_value_t = 4096)]
    pub max_content: usize,

    /// How often the server pings each connection.
    #[arg(long, env = "PING_INTERVAL", default_value = "30s", value_parser = humantime::parse_duration)]
    pub ping_interval: Duration,

    /// A connection with no pong or other traffic for this long is closed 4000 and evicted.
    #[arg(long, env = "IDLE_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub idle_timeout: Duration,

    /// Broadcast join/leave presence events (coalesced per room, and only in rooms up to
    /// --presence-max-members). Presence queries and the online API work either way.
    #[arg(long, env = "PRESENCE_EVENTS", default_value_t = true, action = clap::ArgAction::Set)]
    pub presence_events: bool,

    /// A room's first presence change in a window goes out at once; the further joins and leaves
    /// within this long go out at its end as one `batch` frame. 0 sends each change at once.
    #[arg(long, env = "PRESENCE_COALESCE", default_value = "100ms", value_parser = humantime::parse_duration)]
    pub presence_coalesce: Duration,

    /// Rooms with more members than this send no join/leave events (members use the presence query).
    #[arg(long, env = "PRESENCE_MAX_MEMBERS", default_value_t = 1000)]
    pub presence_max_members: usize,

    /// A room's first typing change in a window goes out at once; the further ones within this long
    /// go out at its end as one `batch` frame. 0 sends each change at once.
    #[arg(long, env = "TYPING_COALESCE", default_value = "1s", value_parser = humantime::parse_duration)]
    pub typing_coalesce: Duration,

    /// A typer who sends no `typing` for this long is told to have stopped.
    #[arg(long, env = "TYPING_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub typing_timeout: Duration,

    /// A room's participants are told its new unread count (`unread`) at most once per this long;
    /// the first message of a window is told at once, the rest at its end.
    #[arg(long, env = "UNREAD_COALESCE", default_value = "1s", value_parser = humantime::parse_duration)]
    pub unread_coalesce: Duration,

    /// Rooms with more participants than this send no `unread` events (their counts are in
    /// `GET /rooms`); 0 sends none.
    #[arg(long, env = "UNREAD_MAX_MEMBERS", default_value_t = 1000)]
    pub unread_max_members: usize,

    /// Rooms with at most this many participants show read receipts (`receipt` events, `GET
    /// .../receipts`); larger ones show none. 0 turns them off.
    #[arg(long, env = "RECEIPTS_MAX_MEMBERS", default_value_t = 100)]
    pub receipts_max_members: usize,

    /// The largest attachment, in bytes (an upload beyond it: 413 too_large).
    #[arg(long, env = "MAX_ATTACHMENT", default_value_t = 25 * 1024 * 1024)]
    pub max_attachment: u64,

    /// The most attachments one chat carries.
    #[arg(long, env = "MAX_ATTACHMENTS_PER_MESSAGE", default_value_t = 10)]
    pub max_attachments_per_message: usize,

    /// The most bytes of attachments one user keeps stored (429 quota_exceeded beyond).
    #[arg(long, env = "UPLOAD_QUOTA", default_value_t = 1024 * 1024 * 1024)]
    pub upload_quota: u64,

    /// The most uploads one user begins per minute (429 rate_limited beyond); 0: no limit.
    #[arg(long, env = "UPLOAD_RATE", default_value_t = 30)]
    pub upload_rate: u32,

    /// The most attachment bytes the store writes per second, in MiB, all uploads together:
    /// beyond it uploads wait (TCP holds the rest back), so chat commits do not queue behind
    /// them at the disk. 0: no limit.
    #[arg(long, env = "ATTACHMENT_WRITE_RATE", default_value_t = 32)]
    pub attachment_write_rate: u64,

    /// A user with no client frame for this long shows as away in presence.
    #[arg(long, env = "AWAY_AFTER", default_value = "30s", value_parser = humantime::parse_duration)]
    pub away_after: Duration,

    /// On SIGINT/SIGTERM, how long connections get to flush their queues and close.
    #[arg(long, env = "SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,

    /// Cluster mode: on SIGINT/SIGTERM, how long this instance keeps its users in cluster presence
    /// after closing their connections, so those that reconnect to another instance cause no
    /// leave/join for the others; the rest are announced as left once, at its end.
    #[arg(long, env = "HANDOVER", default_value = "3s", value_parser = humantime::parse_duration)]
    pub handover: Duration,

    /// WebSocket read buffer per connection in bytes: allocated up front and zeroed on every read, so
    /// kept small; a client message is read in steps of this size, so raise it if clients send large ones.
    #[arg(long, env = "WS_READ_BUFFER", default_value_t = 256)]
    pub ws_read_buffer: usize,

    /// The shard writes each frame (encoded once per publish) straight into its plain-TCP
    /// connections' sockets, one write per connection per batch; off, or with TLS, each
    /// connection's session writes the frames its shard queued.
    #[arg(long, env = "FAST_PATH", default_value_t = true, action = clap::ArgAction::Set)]
    pub fast_path: bool,

    /// SO_SNDBUF of every accepted connection, in bytes (the kernel doubles it). Unset, the kernel
    /// sizes it itself; a small one holds less per slow reader in the kernel and queues sooner.
    #[arg(long, env = "SOCKET_SEND_BUFFER")]
    pub socket_send_buffer: Option<u32>,

    /// Bytes of frames a connection gathers before writing; a batch is always flushed at its end.
    #[arg(long, env = "WS_WRITE_BUFFER", default_value_t = 16_384)]
    pub ws_write_buffer: usize,

    /// Require a JWT on every WebSocket connection and API call (health and metrics stay open).
    #[arg(long, env = "AUTH_ENABLED")]
    pub auth_enabled: bool,

    /// HS256 secret for verifying tokens.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// PEM public key (RSA for RS256, P-256 for ES256) for verifying tokens, instead of a secret.
    #[arg(long, env = "JWT_PUBLIC_KEY")]
    pub jwt_public_key: Option<std::path::PathBuf>,

    /// Required `iss` claim.
    #[arg(long, env = "JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// Required `aud` claim.
    #[arg(long, env = "JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// Clock skew allowed on `exp` and `nbf`.
    #[arg(long, env = "JWT_LEEWAY", default_value = "2s", value_parser = humantime::parse_duration)]
    pub jwt_leeway: Duration,

    /// How long before its token's `exp` a connection is told `token_expiring` (at once when less
    /// remains at connect). Without a refresh it is closed with 4001 at `exp` plus the leeway.
    #[arg(long, env = "TOKEN_EXPIRY_NOTICE", default_value = "30s", value_parser = humantime::parse_duration)]
    pub token_expiry_notice: Duration,

    /// Redis for running several instances as one (e.g. redis://127.0.0.1:6379). Unset: a single
    /// instance, no Redis needed.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,

    /// This instance's name in the cluster: 1-64 of A-Z a-z 0-9 . _ - (default: generated).
    #[arg(long, env = "INSTANCE_ID")]
    pub instance_id: Option<String>,

    /// Prefix of every Redis channel and key, so several clusters can share one Redis.
    #[arg(long, env = "REDIS_PREFIX", default_value = "wsbroker")]
    pub redis_prefix: String,

    /// Most messages the relay sends to Redis in one pipelined write.
    #[arg(long, env = "RELAY_BATCH", default_value_t = 1024)]
    pub relay_batch: usize,

    /// How long the relay waits for more messages to fill a batch before sending it.
    #[arg(long, env = "RELAY_LINGER", default_value = "200us", value_parser = humantime::parse_duration)]
    pub relay_linger: Duration,

    /// Messages waiting for Redis at most; beyond it (Redis slow or away) they are dropped for the
    /// other instances and counted.
    #[arg(long, env = "RELAY_QUEUE", default_value_t = 65_536)]
    pub relay_queue: usize,

    /// How often an instance renews its presence in Redis; an instance silent for two periods is
    /// gone, and its users with it.
    #[arg(long, env = "PRESENCE_HEARTBEAT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub presence_heartbeat: Duration,

    /// Where messages, rooms and participants are stored: `sqlite://PATH` (embedded, one file),
    /// `postgres://user:pass@host/db` (production and clusters), or `none` (nothing is stored).
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://wsbroker.db",
        hide_env_values = true
    )]
    pub database_url: DatabaseUrl,

    /// A chat whose `id` its sender already used in the room this recently is a retry: acked again,
    /// neither delivered nor stored twice.
    #[arg(long, env = "DEDUP_WINDOW", default_value = "5m", value_parser = humantime::parse_duration)]
    pub dedup_window: Duration,

    /// Messages older than this are deleted (in bounded batches, at start-up and every
    /// --retention-interval); 0 keeps them forever.
    #[arg(long, env = "RETENTION", default_value = "90days", value_parser = humantime::parse_duration)]
    pub retention: Duration,

    /// How long after sending its author may edit a message: a duration, `unlimited`, or 0 (editing
    /// is off).
    #[arg(long, env = "EDIT_WINDOW", default_value = "unlimited", value_parser = parse_edit_window)]
    pub edit_window: Duration,

    /// How often the retention job runs.
    #[arg(long, env = "RETENTION_INTERVAL", default_value = "1h", value_parser = humantime::parse_duration)]
    pub retention_interval: Duration,

    /// A public room created at start when missing, which the web page opens for a newcomer
    /// (`""`: none).
    #[arg(long, env = "DEFAULT_ROOM", default_value = "lobby")]
    pub default_room: String,

    /// Messages kept in memory per room for resumes (`join` with `since`); older ones come from
    /// the store, when there is one.
    #[arg(long, env = "RECOVERY_WINDOW", default_value_t = 100)]
    pub recovery_window: usize,

    /// Most writes the store commits in one transaction. Large, so a burst costs few commits: a
    /// commit rewrites every index page it touches, whatever the batch's size.
    #[arg(long, env = "STORE_BATCH", default_value_t = 16_384)]
    pub store_batch: usize,

    /// How long the store's writer waits for more writes to fill a transaction.
    #[arg(long, env = "STORE_LINGER", default_value = "2ms", value_parser = humantime::parse_duration)]
    pub store_linger: Duration,

    /// Writes waiting for the store at most; beyond it new chats get `unavailable`.
    #[arg(long, env = "STORE_QUEUE", default_value_t = 65_536)]
    pub store_queue: usize,

    /// Reader threads (each with its own database connection) for history, rooms and participants.
    #[arg(long, env = "DB_READERS", default_value_t = 2)]
    pub db_readers: usize,

    /// PEM certificate chain: serve wss:// and https:// (with --tls-key). Without it the broker
    /// speaks plain ws:// and http://, for use behind a TLS-terminating load balancer.
    #[arg(long, env = "TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,

    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of --tls-cert.
    #[arg(long, env = "TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,

    /// Origins allowed to open WebSockets (comma-separated, e.g. https://chat.example.com). When set,
    /// an upgrade whose Origin header names another origin gets 403; one without Origin (not a
    /// browser) goes on to the token check.
    #[arg(long, env = "ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,

    /// Load balancers whose X-Forwarded-For is believed: addresses or CIDR networks, comma
    /// separated (e.g. 127.0.0.1,10.0.0.0/8). A request from one of them comes from the rightmost
    /// address the header names that is not one of them (per-address caps and the audit log see
    /// clients, not the balancer). Empty: the header is ignored.
    #[arg(long, env = "TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<crate::proxies::Network>,

    /// Time a client has to send its request headers; a slower client is disconnected.
    #[arg(long, env = "HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub handshake_timeout: Duration,

    /// Chat messages per second per user (all of its connections on this instance together); 0: no limit.
    #[arg(long, env = "RATE_LIMIT", default_value_t = 10.0)]
    pub rate_limit: f64,

    /// Chat messages a user may send at once before the rate applies.
    #[arg(long, env = "RATE_BURST", default_value_t = 20)]
    pub rate_burst: u32,

    /// Refused messages within a minute after which the connection is closed 1008.
    #[arg(long, env = "FLOOD_CLOSE_AFTER", default_value_t = 100)]
    pub flood_close_after: u32,

    /// Most WebSocket connections open at once on this instance (over it: 503); 0 for no cap.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 0)]
    pub max_connections: usize,

    /// Most WebSocket connections open at once from one client address (over it: 429); 0 for no cap.
    #[arg(long, env = "MAX_CONNS_PER_IP", default_value_t = 0)]
    pub max_conns_per_ip: usize,

    /// Most WebSocket connections open at once for one user on this instance (over it: 429); 0 for
    /// no cap. Bounds what one token can hold, and the cost of a user's fan-out and presence checks.
    #[arg(long, env = "MAX_CONNS_PER_USER", default_value_t = 100)]
    pub max_conns_per_user: usize,

    /// Log line format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Log filter, e.g. `info` or `warn,wsbroker=debug`.
    #[arg(long, env = "LOG_LEVEL", default_value = "info")]
    pub log_level: String,
}

impl Config {
    /// Every default, listening on `listen`, and no database (so nothing writes `./wsbroker.db`
    /// unasked): for tests and embedders, which name their database.
    pub fn with_listen(listen: SocketAddr) -> Self {
        let mut config = Self::parse_from(["wsbroker"]);
        config.listen = listen;
        config.database_url = DatabaseUrl::None;
        config
    }

    /// The store's settings, when there is a store.
    pub fn store_settings(&self) -> StoreSettings {
        StoreSettings {
            queue: self.store_queue,
            batch: self.store_batch,
            linger: self.store_linger,
            readers: self.db_readers,
            retention: (!self.retention.is_zero()).then_some(self.retention),
            retention_every: self.retention_interval,
            file_bytes_per_second: (self.attachment_write_rate > 0)
                .then(|| self.attachment_write_rate.saturating_mul(1024 * 1024)),
        }
    }

    pub fn shard_count(&self) -> usize {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        self.shards.map_or(cores.min(MAX_SHARDS), usize::from)
    }
}

/// Where the store lives, from `--database-url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// No persistence: nothing is stored and nothing is read back.
    None,
    Sqlite(std::path::PathBuf),
    Postgres(String),
}

impl std::str::FromStr for DatabaseUrl {
    type Err = String;

    fn from_str(url: &str) -> Result<Self, String> {
        if url == "none" {
            return Ok(Self::None);
        }
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err("sqlite:// needs a file path, e.g. sqlite://wsbroker.db".into());
            }
            return Ok(Self::Sqlite(path.into()));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Self::Postgres(url.to_owned()));
        }
        Err(format!("{url:?}: use none, sqlite://PATH or postgres://..."))
    }
}

/// The store's settings (from the flags).
#[derive(Debug, Clone)]
pub struct StoreSettings {
    pub queue: usize,
    pub batch: usize,
    pub linger: Duration,
    pub readers: usize,
    pub retention: Option<Duration>,
    pub retention_every: Duration,
    /// `--attachment-write-rate`, in bytes.
    pub file_bytes_per_second: Option<u64>,
}

/// `--edit-window`: `unlimited` (no limit), or a duration (0: editing is off).
fn parse_edit_window(text: &str) -> Result<Duration, humantime::DurationError> {
    if text == "unlimited" {
        return Ok(Duration::MAX);
    }
    humantime::parse_duration(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documented_contract() {
        let config = Config::parse_from(["wsbroker"]);
        assert_eq!(config.edit_window, Duration::MAX, "editing has no time limit");
        let off = Config::parse_from(["wsbroker", "--edit-window", "0"]);
        assert!(off.edit_window.is_zero(), "editing off");
        assert_eq!(config.listen, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(config.send_buffer, 256);
        assert_eq!(config.max_frame, 65_536);
        assert_eq!(config.max_content, 4096);
        assert_eq!(config.ping_interval, Duration::from_secs(30));
        assert_eq!(config.idle_timeout, Duration::from_secs(60));
        assert_eq!(config.shutdown_timeout, Duration::from_secs(10));
    }

    #[test]
    fn shards_are_bounded_by_the_directory_width() {
        assert!(Config::try_parse_from(["wsbroker", "--shards", "65"]).is_err());
        assert!(Config::try_parse_from(["wsbroker", "--shards", "0"]).is_err());
        let config =
            Config::try_parse_from(["wsbroker", "--shards", "3", "--idle-timeout", "250ms"])
                .unwrap();
        assert_eq!((config.shard_count(), config.idle_timeout), (3, Duration::from_millis(250)));
    }
}
