//! Throwaway etcd servers on loopback (one member, or a cluster), for tests, examples and
//! benchmarks: free ports (never 2379/2380), a private data directory on tmpfs, killed and
//! removed on drop. Needs the `etcd` binary (Debian: etcd-server) on PATH or in
//! GENREG_ETCD_BIN.
//!
//! [`Etcd`] is a single member, [`Cluster`] is n members in one `--initial-cluster`, whose
//! members can be killed (SIGKILL) and restarted on their old ports and data. Each server
//! gets fresh ephemeral ports and a private directory (data dir and log) under `/dev/shm`
//! when it is writable, else under the temp dir. `Drop` kills every process (SIGKILL) and
//! removes the directory, also when a panic unwinds. std only: processes, files and a tiny
//! HTTP/1.0 client for etcd's `/health` and `/v3/maintenance/status`.
//!
//! The etcd binary is `etcd` from `PATH`, or the path in `GENREG_ETCD_BIN` if set (3.4 or
//! later; Debian/Ubuntu: `apt-get install etcd-server`). `ETCD_*` variables of the calling
//! process are not passed on to it.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use genreg_etcd::EtcdRegistry;
//! use genreg_etcd::local::Etcd;
//!
//! let etcd = Etcd::try_start()?; // a clear message if etcd is missing or never healthy
//! let registry = EtcdRegistry::<String>::connect(&etcd.endpoints()).await?;
//! registry.register("planner", "host-a:7000".to_string()).await?;
//! drop(etcd); // SIGKILL, and its directory is gone
//! # Ok(()) }
//! ```

use std::fs::{self, File};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a fresh server (or cluster) may take to answer `/health` with `true`.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long `leader()` / `wait_healthy_quorum()` poll before giving up.
const POLL_TIMEOUT: Duration = Duration::from_secs(10);
const POLL_EVERY: Duration = Duration::from_millis(20);
/// Attempts with fresh ports when etcd dies at start-up (e.g. a port was taken meanwhile).
const START_ATTEMPTS: usize = 3;

// ---------------------------------------------------------------------------------------
// One member
// ---------------------------------------------------------------------------------------

/// A single-member etcd server on loopback; dropping it kills the process and removes its
/// directory.
#[derive(Debug)]
pub struct Etcd {
    member: Member,
    root: PathBuf,
}

impl Etcd {
    /// Starts a single-member server and waits until it is healthy (20 s); panics with the
    /// message of [`Etcd::try_start`] otherwise.
    pub fn start() -> Etcd {
        Etcd::try_start().unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts a single-member server and waits until it is healthy (20 s). If etcd exits
    /// during start-up (a port taken meanwhile), tries again with fresh ports, three times in
    /// all. The error says what to install when the binary is missing, and carries the tail
    /// of etcd's log when the server does not become healthy.
    pub fn try_start() -> Result<Etcd, String> {
        let mut last_err = String::new();
        for attempt in 1..=START_ATTEMPTS {
            let root = unique_dir("single")?;
            let member = match spawn_single(&root) {
                Ok(m) => m,
                Err(e) => {
                    let _ = fs::remove_dir_all(&root);
                    return Err(e);
                }
            };
            let mut etcd = Etcd { member, root };
            match wait_all_healthy(std::slice::from_mut(&mut etcd.member), START_TIMEOUT) {
                Ok(()) => return Ok(etcd),
                Err(e) => {
                    last_err = format!("attempt {attempt}/{START_ATTEMPTS}: {e}");
                    // Early exit (port race): retry with fresh ports; a timeout: give up.
                    if !e.contains("exited") {
                        break;
                    }
                    drop(etcd);
                }
            }
        }
        Err(format!(
            "etcd (single member) did not become healthy: {last_err}"
        ))
    }

    /// The client URL, `http://127.0.0.1:P`.
    pub fn endpoint(&self) -> String {
        self.member.spec.client_url()
    }

    /// `vec![self.endpoint()]`.
    pub fn endpoints(&self) -> Vec<String> {
        vec![self.endpoint()]
    }

    /// The etcd process id.
    pub fn pid(&self) -> u32 {
        self.member.pid
    }

    /// The server's private directory (its data dir and its log, `etcd.log`, under `m0/`),
    /// removed on drop.
    pub fn dir(&self) -> &Path {
        &self.root
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.member.kill();
        let _ = fs::remove_dir_all(&self.root);
    }
}

// ---------------------------------------------------------------------------------------
// A cluster
// ---------------------------------------------------------------------------------------

/// An n-member etcd cluster on loopback, members `0..n`; dropping it kills every member and
/// removes their directory.
#[derive(Debug)]
pub struct Cluster {
    members: Vec<Member>,
    root: PathBuf,
    token: String,
}

impl Cluster {
    /// Starts `n` members in one `--initial-cluster` and waits until every one is healthy
    /// (20 s); panics with the tails of the logs otherwise.
    pub fn start(n: usize) -> Cluster {
        assert!(n >= 1, "Cluster::start needs at least one member");
        let mut last_err = String::new();
        for attempt in 1..=START_ATTEMPTS {
            let root = unique_dir(&format!("cluster{n}")).unwrap_or_else(|e| panic!("{e}"));
            let token = root_token(&root);
            let ports = free_ports(2 * n).unwrap_or_else(|e| panic!("{e}"));
            let specs: Vec<MemberSpec> = (0..n)
                .map(|i| MemberSpec::new(&format!("m{i}"), ports[2 * i], ports[2 * i + 1], &root))
                .collect::<Result<_, _>>()
                .unwrap_or_else(|e| panic!("{e}"));
            let initial_cluster = initial_cluster(&specs);
            let mut members: Vec<Member> = Vec::with_capacity(n);
            for s in specs {
                match Member::spawn(s, &initial_cluster, &token, "new") {
                    Ok(m) => members.push(m),
                    Err(e) => {
                        members.iter_mut().for_each(Member::kill);
                        let _ = fs::remove_dir_all(&root);
                        panic!("{e}");
                    }
                }
            }
            let mut cluster = Cluster {
                members,
                root,
                token,
            };
            match wait_all_healthy(&mut cluster.members, START_TIMEOUT) {
                Ok(()) => return cluster,
                Err(e) => {
                    last_err = format!("attempt {attempt}/{START_ATTEMPTS}: {e}");
                    if !e.contains("exited") {
                        break;
                    }
                    drop(cluster);
                }
            }
        }
        panic!("etcd cluster of {n} did not become healthy: {last_err}");
    }

    /// The client URLs of all members (killed ones included, in member order).
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.spec.client_url()).collect()
    }

    /// The client URL of member `i`.
    pub fn member_endpoint(&self, i: usize) -> String {
        self.member(i).spec.client_url()
    }

    /// The index of the current leader, as seen by the live members: the member whose own
    /// id (`header.member_id` of `/v3/maintenance/status`) equals the `leader` it reports.
    /// Polls up to 10 s; panics if no live member reports itself as leader.
    pub fn leader(&self) -> usize {
        let deadline = Instant::now() + POLL_TIMEOUT;
        let mut seen = Vec::new();
        loop {
            seen.clear();
            for (i, m) in self.members.iter().enumerate() {
                if !m.alive {
                    continue;
                }
                match status(m.spec.client_port) {
                    Some((id, Some(leader))) if id == leader => return i,
                    Some((id, leader)) => seen.push(format!("m{i}: id {id}, leader {leader:?}")),
                    None => seen.push(format!("m{i}: no answer")),
                }
            }
            if Instant::now() >= deadline {
                panic!(
                    "no etcd member reports itself as leader after {:?} (live members: {:?}; {})",
                    POLL_TIMEOUT,
                    self.live(),
                    seen.join("; ")
                );
            }
            thread::sleep(POLL_EVERY);
        }
    }

    /// SIGKILLs member `i` and reaps it; its data dir is kept (see [`Cluster::restart`]).
    pub fn kill(&mut self, i: usize) {
        self.member_mut(i).kill();
    }

    /// Indices of the members not killed.
    fn live(&self) -> Vec<usize> {
        (0..self.members.len())
            .filter(|&i| self.members[i].alive)
            .collect()
    }

    /// Restarts a killed member `i` on its old ports and data dir (it rejoins the cluster);
    /// does not wait for it: follow with [`Cluster::wait_healthy_quorum`] or
    /// [`Cluster::wait_member_healthy`]. Panics if member `i` is alive or cannot be spawned.
    pub fn restart(&mut self, i: usize) {
        assert!(
            !self.member(i).alive,
            "Cluster::restart({i}): member is still alive"
        );
        let specs: Vec<MemberSpec> = self.members.iter().map(|m| m.spec.clone()).collect();
        let ic = initial_cluster(&specs);
        let spec = self.member(i).spec.clone();
        // With an existing data dir, etcd ignores the initial-cluster flags.
        self.members[i] =
            Member::spawn(spec, &ic, &self.token, "new").unwrap_or_else(|e| panic!("{e}"));
    }

    /// Polls `/health` of member `i` until it answers `true` (20 s); panics otherwise.
    pub fn wait_member_healthy(&mut self, i: usize) {
        let m = &mut self.members[i];
        if let Err(e) = wait_all_healthy(std::slice::from_mut(m), START_TIMEOUT) {
            panic!("etcd member m{i} did not become healthy: {e}");
        }
    }

    /// Polls `/health` on the live members until a majority of all members (n/2 + 1)
    /// answers healthy; 10 s max, then panics.
    pub fn wait_healthy_quorum(&self) {
        let quorum = self.members.len() / 2 + 1;
        let deadline = Instant::now() + POLL_TIMEOUT;
        loop {
            let healthy: Vec<usize> = (0..self.members.len())
                .filter(|&i| self.members[i].alive && health(self.members[i].spec.client_port))
                .collect();
            if healthy.len() >= quorum {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "etcd cluster: only {} of {} members healthy after {:?} (need {quorum}); \
                     healthy {:?}, live {:?}\n{}",
                    healthy.len(),
                    self.members.len(),
                    POLL_TIMEOUT,
                    healthy,
                    self.live(),
                    self.members
                        .iter()
                        .map(|m| m.log_tail())
                        .collect::<Vec<_>>()
                        .join("\n")
                );
            }
            thread::sleep(POLL_EVERY);
        }
    }

    fn member(&self, i: usize) -> &Member {
        let n = self.members.len();
        self.members
            .get(i)
            .unwrap_or_else(|| panic!("member index {i} out of range (cluster of {n})"))
    }

    fn member_mut(&mut self, i: usize) -> &mut Member {
        let n = self.members.len();
        self.members
            .get_mut(i)
            .unwrap_or_else(|| panic!("member index {i} out of range (cluster of {n})"))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            m.kill();
        }
        let _ = fs::remove_dir_all(&self.root);
    }
}

// ---------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct MemberSpec {
    name: String,
    client_port: u16,
    peer_port: u16,
    data_dir: PathBuf,
    log: PathBuf,
}

impl MemberSpec {
    fn new(
        name: &str,
        client_port: u16,
        peer_port: u16,
        root: &Path,
    ) -> Result<MemberSpec, String> {
        let dir = root.join(name);
        fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        Ok(MemberSpec {
            name: name.to_string(),
            client_port,
            peer_port,
            data_dir: dir.join("data"),
            log: dir.join("etcd.log"),
        })
    }
    fn client_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }
    fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }
}

#[derive(Debug)]
struct Member {
    spec: MemberSpec,
    child: Child,
    pid: u32,
    alive: bool,
}

impl Member {
    fn spawn(
        spec: MemberSpec,
        initial_cluster: &str,
        token: &str,
        state: &str,
    ) -> Result<Member, String> {
        let bin = etcd_bin();
        // Append: a restarted member keeps the log of its previous life.
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&spec.log)
            .map_err(|e| format!("cannot create etcd log {}: {e}", spec.log.display()))?;
        let log2 = log
            .try_clone()
            .map_err(|e| format!("cannot clone the handle of {}: {e}", spec.log.display()))?;
        let mut cmd = Command::new(&bin);
        // etcd also reads ETCD_* variables and refuses a setting given twice.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("ETCD_") {
                cmd.env_remove(k);
            }
        }
        cmd.arg("--name")
            .arg(&spec.name)
            .arg("--data-dir")
            .arg(&spec.data_dir)
            .arg("--listen-client-urls")
            .arg(spec.client_url())
            .arg("--advertise-client-urls")
            .arg(spec.client_url())
            .arg("--listen-peer-urls")
            .arg(spec.peer_url())
            .arg("--initial-advertise-peer-urls")
            .arg(spec.peer_url())
            .arg("--initial-cluster")
            .arg(initial_cluster)
            .arg("--initial-cluster-token")
            .arg(token)
            .arg("--initial-cluster-state")
            .arg(state)
            // 3.4 defaults to the deprecated capnslog logger; zap takes --log-level.
            .arg("--logger=zap")
            .arg("--log-outputs=stderr")
            .arg("--log-level=error")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2));
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                let looked = if std::env::var_os("GENREG_ETCD_BIN").is_some() {
                    "the path in GENREG_ETCD_BIN"
                } else {
                    "looked on PATH"
                };
                return Err(format!(
                    "etcd binary `{bin}` not found ({looked}): a real etcd server (3.4+) is \
                     needed. Install it (Debian/Ubuntu: `apt-get install etcd-server`) or set \
                     GENREG_ETCD_BIN=/path/to/etcd."
                ));
            }
            Err(e) => return Err(format!("cannot start etcd `{bin}`: {e}")),
        };
        let pid = child.id();
        Ok(Member {
            spec,
            child,
            pid,
            alive: true,
        })
    }

    /// SIGKILL and reap (no-op when already dead).
    fn kill(&mut self) {
        if self.alive {
            let _ = self.child.kill();
            let _ = self.child.wait();
            self.alive = false;
        }
    }

    /// `Some(exit description)` when the process has exited on its own.
    fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => {
                self.alive = false;
                Some(status.to_string())
            }
            _ => None,
        }
    }

    fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.spec.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(30)..].join("\n");
        format!(
            "--- tail of {} ({}, pid {}) ---\n{}",
            self.spec.log.display(),
            self.spec.name,
            self.pid,
            if tail.is_empty() {
                "(empty)".to_string()
            } else {
                tail
            }
        )
    }
}

fn etcd_bin() -> String {
    std::env::var("GENREG_ETCD_BIN").unwrap_or_else(|_| "etcd".to_string())
}

/// Ports, directory and process of a one-member cluster under `root`.
fn spawn_single(root: &Path) -> Result<Member, String> {
    let ports = free_ports(2)?;
    let spec = MemberSpec::new("m0", ports[0], ports[1], root)?;
    let initial_cluster = format!("{}={}", spec.name, spec.peer_url());
    Member::spawn(spec, &initial_cluster, &root_token(root), "new")
}

fn initial_cluster(specs: &[MemberSpec]) -> String {
    specs
        .iter()
        .map(|s| format!("{}={}", s.name, s.peer_url()))
        .collect::<Vec<_>>()
        .join(",")
}

/// Waits until every member answers `/health` with `true`. `Err` mentions "exited" when a
/// member died (e.g. its port was taken), which the callers retry with fresh ports.
fn wait_all_healthy(members: &mut [Member], timeout: Duration) -> Result<(), String> {
    let start = Instant::now();
    let deadline = start + timeout;
    let mut ok = vec![false; members.len()];
    loop {
        for (i, m) in members.iter_mut().enumerate() {
            if ok[i] {
                continue;
            }
            if let Some(status) = m.exited() {
                return Err(format!(
                    "etcd member {} exited during start-up ({status}) after {:?}\n{}",
                    m.spec.name,
                    start.elapsed(),
                    m.log_tail()
                ));
            }
            ok[i] = health(m.spec.client_port);
        }
        if ok.iter().all(|&b| b) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let tails: Vec<String> = members.iter().map(|m| m.log_tail()).collect();
            let sick: Vec<&str> = members
                .iter()
                .zip(&ok)
                .filter(|(_, ok)| !**ok)
                .map(|(m, _)| m.spec.name.as_str())
                .collect();
            return Err(format!(
                "etcd member(s) {sick:?} not healthy (GET /health) after {timeout:?}; is the machine \
                 overloaded, or is `{}` broken? (Debian/Ubuntu: `apt-get install etcd-server`)\n{}",
                etcd_bin(),
                tails.join("\n")
            ));
        }
        thread::sleep(POLL_EVERY);
    }
}

// ---------------------------------------------------------------------------------------
// Ports and directories
// ---------------------------------------------------------------------------------------

/// `n` distinct free loopback ports, never 2379/2380 (all listeners held at once, then
/// dropped).
fn free_ports(n: usize) -> Result<Vec<u16>, String> {
    let mut held = Vec::with_capacity(n);
    while held.len() < n {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| Ok((l.local_addr()?.port(), l)))
            .map_err(|e| format!("cannot bind 127.0.0.1:0 for a free port: {e}"))?;
        if port.0 != 2379 && port.0 != 2380 {
            held.push(port);
        }
    }
    Ok(held.into_iter().map(|(port, _listener)| port).collect())
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A fresh directory on tmpfs (`/dev/shm` if writable) or in the temp dir.
fn unique_dir(kind: &str) -> Result<PathBuf, String> {
    let base = tmp_base();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let name = format!(
        "genreg-etcd-{kind}-{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let dir = base.join(name);
    fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    Ok(dir)
}

fn tmp_base() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        let probe = shm.join(format!(".genreg-etcd-probe-{}", std::process::id()));
        if File::create(&probe).is_ok() {
            let _ = fs::remove_file(&probe);
            return shm.to_path_buf();
        }
    }
    std::env::temp_dir()
}

fn root_token(root: &Path) -> String {
    root.file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "genreg-etcd".into())
}

// ---------------------------------------------------------------------------------------
// Tiny HTTP/1.0 client
// ---------------------------------------------------------------------------------------

/// `GET /health` answers with a body containing `"health":"true"`.
fn health(port: u16) -> bool {
    match http(port, "GET", "/health", None) {
        Some(body) => body.replace(' ', "").contains("\"health\":\"true\""),
        None => false,
    }
}

/// `POST /v3/maintenance/status {}` -> (own member id, leader id if any). etcd 3.4's gateway
/// prints uint64s as decimal strings and omits zero fields (no `leader` without a leader).
fn status(port: u16) -> Option<(u64, Option<u64>)> {
    let body = http(port, "POST", "/v3/maintenance/status", Some("{}"))?;
    let header = &body[body.find("\"header\"")?..];
    let id = json_u64(header, "member_id")?;
    // `leader` is a top-level field; strip the header object so only that one can match.
    let after_header = &header[header.find('}')?..];
    let before_header = &body[..body.find("\"header\"")?];
    let leader = json_u64(after_header, "leader").or_else(|| json_u64(before_header, "leader"));
    Some((id, leader.filter(|&l| l != 0)))
}

/// The value of `"key":"123"` or `"key":123` in `s`.
fn json_u64(s: &str, key: &str) -> Option<u64> {
    let pat = format!("\"{key}\"");
    let rest = &s[s.find(&pat)? + pat.len()..];
    let rest = rest.trim_start().strip_prefix(':')?.trim_start();
    let rest = rest.strip_prefix('"').unwrap_or(rest);
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

/// One HTTP/1.0 request; the body of a 2xx answer, `None` on any failure.
fn http(port: u16, method: &str, path: &str, body: Option<&str>) -> Option<String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    s.set_write_timeout(Some(Duration::from_secs(3))).ok()?;
    let body = body.unwrap_or("");
    let req = format!(
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status_line = head.lines().next()?;
    let code = status_line.split_whitespace().nth(1)?;
    if !code.starts_with('2') {
        return None;
    }
    Some(body.to_string())
}
