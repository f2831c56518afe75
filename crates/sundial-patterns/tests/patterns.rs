//! Runs every pattern program against a Sundial server and requires each to exit 0.
//!
//! The server is the workspace's `sundial` binary, spawned on a free loopback port with a
//! database in a temporary directory. It is looked up next to this test's own build output
//! (`target/<profile>/sundial`, so build it first: `cargo build -p sundial`), or taken from
//! `SUNDIAL_BIN`. With `SUNDIAL_ADDRESS=HOST:PORT` set, no server is spawned and the programs
//! run against that address instead (e.g. Temporal's own dev server).
//!
//! The programs are the ones Cargo built for this package (`CARGO_BIN_EXE_<name>`), so they
//! are not rebuilt per test; a few run at a time.

use std::{
    fs::File,
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

/// Every pattern program of this package.
const PATTERNS: &[(&str, &str)] = &[
    ("activity-choice", env!("CARGO_BIN_EXE_activity-choice")),
    (
        "parallel-activities",
        env!("CARGO_BIN_EXE_parallel-activities"),
    ),
    ("cancellation", env!("CARGO_BIN_EXE_cancellation")),
    ("continue-as-new", env!("CARGO_BIN_EXE_continue-as-new")),
    ("entity", env!("CARGO_BIN_EXE_entity")),
    ("concurrent-timers", env!("CARGO_BIN_EXE_concurrent-timers")),
    ("child-workflow", env!("CARGO_BIN_EXE_child-workflow")),
    ("exceptions", env!("CARGO_BIN_EXE_exceptions")),
    ("local-activity", env!("CARGO_BIN_EXE_local-activity")),
    ("encryption", env!("CARGO_BIN_EXE_encryption")),
    ("polling-frequent", env!("CARGO_BIN_EXE_polling-frequent")),
    (
        "polling-infrequent",
        env!("CARGO_BIN_EXE_polling-infrequent"),
    ),
    ("typed-payloads", env!("CARGO_BIN_EXE_typed-payloads")),
    ("custom-metrics", env!("CARGO_BIN_EXE_custom-metrics")),
    ("schedule", env!("CARGO_BIN_EXE_schedule")),
];

/// How many programs run at the same time.
const CONCURRENCY: usize = 3;
/// A program that has not exited after this long is killed and counted as failed (each
/// promises to finish within 30 s).
const PROGRAM_TIMEOUT: Duration = Duration::from_secs(40);
const SERVER_START_TIMEOUT: Duration = Duration::from_secs(20);

/// A spawned `sundial server start-dev`, killed on drop.
struct Server {
    child: Child,
    address: String,
    log: PathBuf,
    /// With `SUNDIAL_TEST_BACKEND=postgres`, the server's database (dropped after it).
    _postgres: Option<sundial_store::testing::TestDatabase>,
}

impl Server {
    fn start(dir: &Path) -> Server {
        let port = free_port();
        let db = dir.join("patterns.db");
        let postgres = sundial_store::testing::TestDatabase::requested().then(|| {
            sundial_store::testing::TestDatabase::create("patterns")
                .unwrap_or_else(|e| panic!("SUNDIAL_TEST_BACKEND=postgres: {e}"))
        });
        let storage = match &postgres {
            Some(db) => ["--db-url".to_string(), db.url.clone()],
            None => ["--db-filename".to_string(), db.display().to_string()],
        };
        let args = [
            "server",
            "start-dev",
            "--headless",
            "--ip",
            "127.0.0.1",
            "--log-level",
            "warn",
        ]
        .map(String::from)
        .into_iter()
        .chain(["--port".into(), port.to_string()])
        .chain(storage);
        let mut server = Server::start_with(dir, port, args.collect());
        server._postgres = postgres;
        server
    }

    /// Runs `sundial ARGS` and waits until it listens on `port`.
    fn start_with(dir: &Path, port: u16, args: Vec<String>) -> Server {
        let bin = sundial_binary();
        let log = dir.join("server.log");
        let out = File::create(&log).expect("create the server log");
        let err = out.try_clone().expect("clone the server log handle");
        let child = Command::new(&bin)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {}: {e}", bin.display()));
        let mut server = Server {
            child,
            address: format!("127.0.0.1:{port}"),
            log,
            _postgres: None,
        };
        server.wait_until_listening(port);
        server
    }

    fn wait_until_listening(&mut self, port: u16) {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + SERVER_START_TIMEOUT;
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "the sundial server exited early ({status}).\n{}",
                    tail(&self.log, 4000)
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "the sundial server did not listen on {addr} within {SERVER_START_TIMEOUT:?}.\n{}",
                    tail(&self.log, 4000)
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `sundial` binary: `SUNDIAL_BIN`, else next to this test's build output, else the
/// workspace's `target/debug`.
fn sundial_binary() -> PathBuf {
    if let Ok(path) = std::env::var("SUNDIAL_BIN") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "SUNDIAL_BIN={} is not a file",
            path.display()
        );
        return path;
    }
    let exe_name = format!("sundial{}", std::env::consts::EXE_SUFFIX);
    let mut candidates = Vec::new();
    // This test runs as target/<profile>/deps/patterns-<hash>.
    if let Ok(me) = std::env::current_exe()
        && let Some(profile_dir) = me.parent().and_then(Path::parent)
    {
        candidates.push(profile_dir.join(&exe_name));
    }
    candidates.push(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../target/debug")
            .join(&exe_name),
    );
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "the sundial server binary was not found (looked at {candidates:?}). \
                 Build it first with `cargo build -p sundial`, or set SUNDIAL_BIN, or point \
                 SUNDIAL_ADDRESS at a running server."
            )
        })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

/// The last `max` bytes of a file, for failure messages.
fn tail(path: &Path, max: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let start = bytes.len().saturating_sub(max);
            format!(
                "--- {} (tail) ---\n{}",
                path.display(),
                String::from_utf8_lossy(&bytes[start..])
            )
        }
        Err(e) => format!("({} unavailable: {e})", path.display()),
    }
}

struct Outcome {
    name: &'static str,
    status: Result<ExitStatus, String>,
    elapsed: Duration,
    output: String,
}

fn run_program(name: &'static str, exe: &str, address: &str, dir: &Path) -> Outcome {
    run_program_with(name, exe, address, dir, &[])
}

fn run_program_with(
    name: &'static str,
    exe: &str,
    address: &str,
    dir: &Path,
    extra: &[String],
) -> Outcome {
    let out_path = dir.join(format!("{name}.out"));
    let out = File::create(&out_path).expect("create the program's output file");
    let err = out.try_clone().expect("clone the output file handle");
    let started = Instant::now();
    let status = match Command::new(exe)
        .args(["--address", address, "--namespace", "default"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
    {
        Err(e) => Err(format!("could not start {exe}: {e}")),
        Ok(mut child) => loop {
            match child.try_wait() {
                Ok(Some(status)) => break Ok(status),
                Ok(None) if started.elapsed() > PROGRAM_TIMEOUT => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break Err(format!("killed after {PROGRAM_TIMEOUT:?}"));
                }
                Ok(None) => thread::sleep(Duration::from_millis(20)),
                Err(e) => break Err(format!("waiting for the program failed: {e}")),
            }
        },
    };
    Outcome {
        name,
        status,
        elapsed: started.elapsed(),
        output: std::fs::read_to_string(&out_path).unwrap_or_default(),
    }
}

#[test]
fn every_pattern_program_passes_against_sundial() {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let external = std::env::var("SUNDIAL_ADDRESS")
        .ok()
        .filter(|a| !a.trim().is_empty());
    let server = match &external {
        Some(_) => None,
        None => Some(Server::start(dir.path())),
    };
    let address = external
        .clone()
        .unwrap_or_else(|| server.as_ref().expect("spawned").address.clone());

    let queue = Arc::new(Mutex::new(
        PATTERNS.iter().rev().copied().collect::<Vec<_>>(),
    ));
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let queue = queue.clone();
            let outcomes = outcomes.clone();
            let address = address.clone();
            let dir = dir.path().to_path_buf();
            thread::spawn(move || {
                loop {
                    let next = queue.lock().unwrap().pop();
                    let Some((name, exe)) = next else { break };
                    let outcome = run_program(name, exe, &address, &dir);
                    outcomes.lock().unwrap().push(outcome);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("runner thread panicked");
    }

    let outcomes = std::mem::take(&mut *outcomes.lock().unwrap());
    let mut failures = Vec::new();
    for o in &outcomes {
        let passed = matches!(&o.status, Ok(s) if s.success());
        let has_ids = o.output.lines().any(|l| l.starts_with("workflow id: "));
        eprintln!(
            "{:<20} {:<4} {:>6.2}s",
            o.name,
            if passed && has_ids { "ok" } else { "FAIL" },
            o.elapsed.as_secs_f64()
        );
        if !passed || !has_ids {
            let why = match &o.status {
                Ok(s) if s.success() => "exited 0 but printed no `workflow id:` line".to_string(),
                Ok(s) => format!("exited with {s}"),
                Err(e) => e.clone(),
            };
            failures.push(format!("=== {} {why}\n{}", o.name, o.output));
        }
    }
    assert_eq!(outcomes.len(), PATTERNS.len(), "not every program ran");
    if !failures.is_empty() {
        let server_log = match &server {
            Some(s) => tail(&s.log, 4000),
            None => format!("(external server at {address})"),
        };
        panic!(
            "{} of {} pattern programs failed against {address}:\n{}\n{server_log}",
            failures.len(),
            PATTERNS.len(),
            failures.join("\n")
        );
    }
}

/// Throwaway PKI: a CA, a server certificate for 127.0.0.1/localhost, a client certificate.
fn write_certificates(dir: &Path) -> [PathBuf; 5] {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "patterns test CA");
    let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf = |names: Vec<String>, cn: &str| {
        let key = KeyPair::generate().expect("leaf key");
        let mut params = CertificateParams::new(names).expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, cn);
        let cert = params.signed_by(&key, &issuer).expect("leaf certificate");
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = leaf(vec!["localhost".into(), "127.0.0.1".into()], "sundial");
    let (client_cert, client_key) = leaf(vec![], "patterns-client");
    let files = [
        ("ca.pem", ca.pem()),
        ("server.pem", server_cert),
        ("server.key", server_key),
        ("client.pem", client_cert),
        ("client.key", client_key),
    ];
    files.map(|(name, text)| {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write a certificate file");
        path
    })
}

#[test]
fn mtls_pattern_passes_against_a_tls_sundial() {
    if std::env::var("SUNDIAL_ADDRESS").is_ok_and(|a| !a.trim().is_empty()) {
        eprintln!("skipped: SUNDIAL_ADDRESS is set (the mtls program needs a TLS server)");
        return;
    }
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let [ca, server_cert, server_key, client_cert, client_key] = write_certificates(dir.path());
    let port = free_port();
    let config = dir.path().join("sundial.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n[storage]\npath = {db:?}\n[log]\nlevel = \"warn\"\n\
             [tls]\ncert = {server_cert:?}\nkey = {server_key:?}\nclient_ca = {ca:?}\nclient_auth = \"required\"\n",
            db = dir.path().join("tls.db"),
        ),
    )
    .expect("write the configuration");
    let server = Server::start_with(
        dir.path(),
        port,
        vec![
            "server".into(),
            "start".into(),
            "--config".into(),
            config.display().to_string(),
        ],
    );
    let path = |p: &PathBuf| p.display().to_string();
    let with_cert = [
        "--tls-cert".into(),
        path(&client_cert),
        "--tls-key".into(),
        path(&client_key),
        "--tls-ca".into(),
        path(&ca),
        "--server-name".into(),
        "localhost".into(),
    ];
    let exe = env!("CARGO_BIN_EXE_mtls");
    let ok = run_program_with("mtls", exe, &server.address, dir.path(), &with_cert);
    let passed = matches!(&ok.status, Ok(s) if s.success());
    assert!(
        passed && ok.output.contains("workflow id: "),
        "mtls failed:\n{}\n{}",
        ok.output,
        tail(&server.log, 4000)
    );
    // Without a client certificate the server refuses the connection and the program fails.
    let no_cert = [
        "--tls-ca".into(),
        path(&ca),
        "--server-name".into(),
        "localhost".into(),
    ];
    let refused = run_program_with("mtls", exe, &server.address, dir.path(), &no_cert);
    assert!(
        matches!(&refused.status, Ok(s) if !s.success()),
        "mtls without a client certificate should fail:\n{}",
        refused.output
    );
}
