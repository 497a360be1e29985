//! Command-line arguments of `commucat bench`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

/// `commucat bench`: load scenarios over the real protocol (loopback targets only).
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Where the server is and how to trust it.
    #[command(flatten)]
    pub target: TargetArgs,
    /// Print the result as one JSON object (no progress bar).
    #[arg(long, global = true)]
    pub json: bool,
    /// What to measure.
    #[command(subcommand)]
    pub scenario: Scenario,
}

/// How to reach the server.
#[derive(Debug, Clone, Args)]
pub struct TargetArgs {
    /// Server address (must be a loopback address).
    #[arg(long, global = true, default_value = "127.0.0.1:8443")]
    pub addr: SocketAddr,
    /// Several nodes of one deployment, comma-separated (loopback addresses): connection
    /// number `i` goes to the `i mod N`-th (so the two devices of a relay pair land on different
    /// nodes); replaces `--addr`. They must share keys and certificate.
    #[arg(
        long,
        global = true,
        value_delimiter = ',',
        value_name = "ADDR,ADDR,..."
    )]
    pub target: Vec<SocketAddr>,
    /// TLS server name.
    #[arg(long, global = true, default_value = "localhost")]
    pub server_name: String,
    /// Trust this PEM certificate (e.g. the server's `tls/dev_cert.pem`).
    #[arg(long, global = true, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Pin the server certificate's SHA-256 fingerprint (as `serve` prints it).
    #[arg(long, global = true, conflicts_with = "ca")]
    pub fingerprint: Option<String>,
    /// Server Noise static public key (hex); default: from `GET /api/server-info`.
    #[arg(long, global = true)]
    pub server_key: Option<String>,
    /// Server domain bound into the handshake proof; default: from `GET /api/server-info`.
    #[arg(long, global = true)]
    pub domain: Option<String>,
    /// Process id of the server, for its CPU time and resident memory (`/proc/PID`).
    #[arg(long, global = true)]
    pub server_pid: Option<u32>,
    /// Connect from the system-chosen source address instead of spreading connections over
    /// 127.0.0.0/8.
    #[arg(long, global = true)]
    pub no_spread: bool,
}

/// A load scenario.
#[derive(Debug, Subcommand)]
pub enum Scenario {
    /// Concurrent connect + device handshake loops: handshakes/s, latency, server CPU.
    Handshake(HandshakeArgs),
    /// Device pairs exchanging MSG frames: delivered msgs/s and end-to-end latency, optionally
    /// against the echo baseline measured in the same run.
    Relay(RelayArgs),
    /// One sender, a channel of K members: deliveries/s.
    Fanout(FanoutArgs),
    /// Open sessions and hold them: server memory per session.
    Idle(IdleArgs),
    /// Queue envelopes for an offline device, reconnect it, time the replay.
    Offline(OfflineArgs),
    /// Hold TLS connections that never send a request while bystanders handshake and chat.
    Flood(FloodArgs),
    /// Device pairs at a fixed offered rate for a long time, sampling the server's resident
    /// memory and open file descriptors (needs `--server-pid`).
    Soak(SoakArgs),
    /// Senders queue MSGs for devices that are not connected while the server (a `commucat
    /// serve` child) is killed with SIGKILL at random moments and restarted; then every
    /// acknowledged envelope must reach its recipient. Exits non-zero if one is lost.
    Crash(CrashArgs),
    /// The baseline fixture: TLS 1.3 + HTTP/2 on the server's own stack, echoing every
    /// `POST /connect` body back, with no protocol logic.
    EchoServer {
        /// Listen address.
        #[arg(long, default_value = "127.0.0.1:9443")]
        listen: SocketAddr,
        /// Directory holding (or receiving) the dev TLS certificate; pointing it at the
        /// server's data directory makes the echo present the server's certificate.
        #[arg(long, value_name = "DIR", default_value = "./commucat-data")]
        data_dir: PathBuf,
    },
}

/// Frames after the handshake: plain, or as Noise transport records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Transport {
    /// Plain CCP-1 frames inside TLS.
    Plain,
    /// `noise-transport` records.
    Noise,
    /// Both, one after the other.
    Both,
}

/// `handshake` options.
#[derive(Debug, Clone, Args)]
pub struct HandshakeArgs {
    /// Concurrent loops.
    #[arg(long, default_value_t = 8)]
    pub loops: usize,
    /// Handshakes in total (the run stops at this count or at `--duration`).
    #[arg(long, default_value_t = 2000)]
    pub count: u64,
    /// Longest run, seconds.
    #[arg(long, default_value_t = 30)]
    pub duration: u64,
    /// Use IK instead of XK.
    #[arg(long)]
    pub ik: bool,
    /// Every handshake registers a new device (default: each loop registers one device first
    /// and then reconnects it, the returning-client case).
    #[arg(long)]
    pub fresh: bool,
    /// Hybrid handshakes: every device has ML-KEM-768 / ML-DSA-65 keys and asks for
    /// `pq-hybrid` (with `noise-transport`); a session the server did not make hybrid counts
    /// as a failure.
    #[arg(long)]
    pub pq: bool,
}

/// `relay` options.
#[derive(Debug, Clone, Args)]
pub struct RelayArgs {
    /// Device pairs (each device sends to its peer and receives from it).
    #[arg(long, default_value_t = 8)]
    pub pairs: usize,
    /// MSG payload size in bytes (at least 16: the payload carries the send timestamp).
    #[arg(long, default_value_t = 256)]
    pub size: usize,
    /// Offered load in msgs/s over all senders; 0 = as fast as possible with `--window`
    /// messages in flight per sender.
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Unacknowledged messages per sender in the maximum-rate mode.
    #[arg(long, default_value_t = 32)]
    pub window: usize,
    /// Seconds of sending per phase.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Seconds after the sending phase for outstanding messages to arrive; a message not
    /// delivered by then is lost, and counts in the latency percentiles as arriving then.
    #[arg(long, default_value_t = 10)]
    pub drain: u64,
    /// Most messages one sender sends per phase.
    #[arg(long, default_value_t = 10_000_000)]
    pub count: u64,
    /// Frames after the handshake.
    #[arg(long, value_enum, default_value_t = Transport::Plain)]
    pub transport: Transport,
    /// Also run a `pq-hybrid` relay phase (records keyed from the hybrid material, the
    /// server's ratchet schedule on) after the `--transport` phases, reported beside them.
    #[arg(long)]
    pub pq: bool,
    /// Address of a `commucat bench echo-server` (same certificate): measure the echo
    /// baseline with the same connections, sizes and load first, and report relay as % of it.
    #[arg(long)]
    pub echo: Option<SocketAddr>,
}

/// `fanout` options.
#[derive(Debug, Clone, Args)]
pub struct FanoutArgs {
    /// Channel members, the sender included.
    #[arg(long, default_value_t = 1000)]
    pub members: usize,
    /// MSG payload size in bytes (at least 16).
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Messages the sender sends.
    #[arg(long, default_value_t = 500)]
    pub messages: u64,
    /// Messages in flight (sent but not yet delivered to every member).
    #[arg(long, default_value_t = 16)]
    pub window: u64,
    /// Longest run of the sending phase, seconds.
    #[arg(long, default_value_t = 60)]
    pub duration: u64,
    /// Concurrent connects while members join.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
}

/// `idle` options.
#[derive(Debug, Clone, Args)]
pub struct IdleArgs {
    /// Sessions to open and hold.
    #[arg(long, default_value_t = 1000)]
    pub sessions: usize,
    /// Concurrent connects while opening.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Seconds to hold them open before the memory is read again.
    #[arg(long, default_value_t = 5)]
    pub hold: u64,
    /// Longest time for opening all sessions, seconds.
    #[arg(long, default_value_t = 600)]
    pub duration: u64,
}

/// `offline` options.
#[derive(Debug, Clone, Args)]
pub struct OfflineArgs {
    /// Envelopes to queue (the server's `offline.max_per_device` bounds this).
    #[arg(long, default_value_t = 10_000)]
    pub envelopes: u64,
    /// MSG payload size in bytes (at least 16).
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Unacknowledged messages per sender while queueing.
    #[arg(long, default_value_t = 64)]
    pub window: usize,
    /// Concurrent senders, each with its own connection and channel to the offline device;
    /// the envelopes are shared out among them.
    #[arg(long, default_value_t = 1)]
    pub senders: usize,
    /// Longest time for each of queueing and draining, seconds.
    #[arg(long, default_value_t = 300)]
    pub duration: u64,
}

/// `flood` options.
#[derive(Debug, Clone, Args)]
pub struct FloodArgs {
    /// TLS connections to open and hold, each from its own loopback source address.
    #[arg(long, default_value_t = 15_000)]
    pub connections: usize,
    /// Concurrent TLS handshakes while opening.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Seconds to hold the connections once opened.
    #[arg(long, default_value_t = 10)]
    pub hold: u64,
    /// Bystander pairs handshaking and chatting throughout.
    #[arg(long, default_value_t = 4)]
    pub bystanders: usize,
    /// MSGs per bystander round.
    #[arg(long, default_value_t = 10)]
    pub messages: u64,
    /// Longest time for opening the connections, seconds.
    #[arg(long, default_value_t = 600)]
    pub duration: u64,
}

/// `soak` options.
#[derive(Debug, Clone, Args)]
pub struct SoakArgs {
    /// Device pairs (each device sends to its peer and receives from it).
    #[arg(long, default_value_t = 8)]
    pub pairs: usize,
    /// MSG payload size in bytes (at least 16).
    #[arg(long, default_value_t = 256)]
    pub size: usize,
    /// Offered load in msgs/s over all senders (open loop).
    #[arg(long)]
    pub rate: u64,
    /// Seconds of sending.
    #[arg(long, default_value_t = 1800)]
    pub duration: u64,
    /// Seconds after the sending phase for outstanding messages to arrive.
    #[arg(long, default_value_t = 10)]
    pub drain: u64,
    /// Seconds between two readings of the server's memory and descriptors.
    #[arg(long, default_value_t = 10)]
    pub sample_interval: u64,
    /// Write every reading to this CSV file (rewritten at each reading, so a run cut short
    /// keeps its samples).
    #[arg(long, value_name = "FILE")]
    pub samples: Option<PathBuf>,
    /// Make the second device stop reading for this many seconds at the start, so that the
    /// server ends its session as a slow consumer (tests of the reconnection path).
    #[arg(long, default_value_t = 0.0, hide = true)]
    pub stall_receiver: f64,
}

/// `crash` options.
#[derive(Debug, Clone, Args)]
pub struct CrashArgs {
    /// SIGKILLs (each followed by a restart).
    #[arg(long, default_value_t = 20)]
    pub kills: u64,
    /// Senders, each with its own recipient that stays offline until the end.
    #[arg(long, default_value_t = 4)]
    pub senders: usize,
    /// Offered load in msgs/s over all senders.
    #[arg(long, default_value_t = 400)]
    pub rate: u64,
    /// Most messages one sender sends (keep it under `offline.max_per_device`).
    #[arg(long, default_value_t = 5000)]
    pub count: u64,
    /// Most unanswered MSGs per sender (it waits for ACKs beyond that).
    #[arg(long, default_value_t = 32)]
    pub window: usize,
    /// MSG payload size in bytes (at least 16).
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Shortest time the server runs before a kill, milliseconds.
    #[arg(long, default_value_t = 300)]
    pub min_uptime_ms: u64,
    /// Longest time the server runs before a kill, milliseconds.
    #[arg(long, default_value_t = 3000)]
    pub max_uptime_ms: u64,
    /// Seed of the kill moments (default: random, printed in the report).
    #[arg(long)]
    pub seed: Option<u64>,
    /// The server's data directory (keys, certificate, SQLite store); reused across restarts.
    #[arg(long, value_name = "DIR")]
    pub data_dir: PathBuf,
    /// PostgreSQL store (`COMMUCAT_STORE_URL` of the server); default: SQLite in the data
    /// directory.
    #[arg(long)]
    pub store_url: Option<String>,
    /// PostgreSQL schema (`COMMUCAT_STORE_SCHEMA` of the server).
    #[arg(long)]
    pub store_schema: Option<String>,
    /// The server binary, run as `BIN serve`; default: this executable.
    #[arg(long, value_name = "BIN")]
    pub server_bin: Option<PathBuf>,
    /// Append the server's standard error to this file.
    #[arg(long, value_name = "FILE")]
    pub server_log: Option<PathBuf>,
}
