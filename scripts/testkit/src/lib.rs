//! Test plumbing shared by every stage's black-box tests. Not a lesson.
//!
//! A stage's binary is started with `--addr 127.0.0.1:0`; it prints
//! `listening on ADDR` as its first line of stdout, which [`Server::start`]
//! reads to learn the real port. The process is killed when the [`Server`] is
//! dropped, so a failing test never leaves a server behind.
//!
//! A passing test is quiet: a server's stderr (its hints, its reports, the
//! errors a test provokes on purpose) is captured, and shown only when the
//! test fails. A test that cannot run here says so with [`skip`].
//!
//! Everything here uses std, nix for `poll` and `rlimit`, and serde_json to
//! read a timeline: no stage's lesson leaks into it.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

/// How long any single test step may wait before the test calls it a hang.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// Says that the calling test cannot run here, and why, in one line:
/// `skipped: REASON (test NAME)`. The caller then returns, and libtest
/// reports the test `ok`; this line is how a reader tells "passed" from
/// "could not run" (no Chromium, no curl, no io_uring, too few
/// descriptors).
///
/// The line goes straight to the process's stderr, not through `eprintln!`:
/// libtest captures what `print!`/`eprint!` write from a test and shows it
/// only if the test fails, so an `eprintln!` here would vanish from every
/// normal `cargo test` run. (The other way round, `--nocapture` for every
/// run, would show every test's chatter too.) Writes to `io::stderr()` are
/// not captured. The test's name, which libtest gives its thread, says
/// which test the line belongs to when tests run in parallel.
pub fn skip(reason: &str) {
    let current = thread::current();
    let line = match current.name() {
        Some(test) if test != "main" => format!("skipped: {reason} (test {test})\n"),
        _ => format!("skipped: {reason}\n"),
    };
    // Nowhere better to report a failed write to stderr.
    let _ = io::stderr().write_all(line.as_bytes());
}

/// Why `bin`, started with `args`, refuses to run here, when its stderr
/// says `phrase` (a kernel feature it lacks, such as io_uring): that
/// stderr, for [`skip`]. `None` when it does not say so. The arguments
/// should make a server that can run stop at once after the check.
pub fn refusal(bin: &str, args: &[&str], phrase: &str) -> Option<String> {
    let out = Command::new(bin)
        .args(args)
        .output()
        .expect("run the server");
    let stderr = String::from_utf8_lossy(&out.stderr);
    stderr.contains(phrase).then(|| stderr.trim().to_string())
}

/// A server process started for one test.
pub struct Server {
    child: Child,
    /// The address from the `listening on ADDR` line.
    pub addr: SocketAddr,
    /// Kept open so the server never gets EPIPE on stdout; the rest of its
    /// output can be read with [`Server::read_stdout_line`].
    stdout: BufReader<ChildStdout>,
    /// Everything the server (and its children, which share the pipe) has
    /// written on stderr so far, collected by `stderr_reader`. Shown if the
    /// test panics (see `Drop`), returned by [`Server::stderr_to_end`].
    stderr: Arc<Mutex<Vec<u8>>>,
    /// The thread that drains the stderr pipe into `stderr`, so the server
    /// never blocks on a full pipe. It ends when every process holding the
    /// pipe has exited; `None` once joined.
    stderr_reader: Option<thread::JoinHandle<()>>,
}

impl Server {
    /// Starts `bin` with `args` (which should include `--addr 127.0.0.1:0`).
    /// Its stderr is captured: see [`Server::stderr_to_end`], and `Drop`,
    /// which prints it if the test is failing.
    pub fn start(bin: &str, args: &[&str]) -> Server {
        Self::spawn(Command::new(bin).args(args))
    }

    /// Starts `bin` under `sh -c 'ulimit -n NOFILE; exec bin args…'`, for the
    /// tests that need a low descriptor limit.
    pub fn start_with_nofile(nofile: u32, bin: &str, args: &[&str]) -> Server {
        Self::start_under_ulimit(&format!("-n {nofile}"), bin, args)
    }

    /// Starts `bin` under `sh -c 'ulimit LIMIT; exec bin args…'`: `-n 256`
    /// sets both descriptor limits, `-Sn 256` the soft one only.
    pub fn start_under_ulimit(limit: &str, bin: &str, args: &[&str]) -> Server {
        let script = format!("ulimit {limit} && exec \"$0\" \"$@\"");
        Self::spawn(Command::new("sh").arg("-c").arg(script).arg(bin).args(args))
    }

    fn spawn(cmd: &mut Command) -> Server {
        // Captured rather than inherited: an inherited stderr is the test
        // process's own descriptor, which libtest cannot capture, so every
        // server's hints and reports would fill the output of a passing run.
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn server");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let stderr_reader = child.stderr.take().map(|mut pipe| {
            let sink = Arc::clone(&stderr);
            thread::spawn(move || {
                let mut buf = [0u8; 4096];
                loop {
                    match pipe.read(&mut buf) {
                        // Every process holding the pipe has exited.
                        Ok(0) => return,
                        Ok(n) => lock(&sink).extend_from_slice(&buf[..n]),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(_) => return,
                    }
                }
            })
        });
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        let read = stdout.read_line(&mut line);
        let mut server = Server {
            child,
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            stdout,
            stderr,
            stderr_reader,
        };
        read.expect("read first line");
        let Some(addr) = line.trim().strip_prefix("listening on ") else {
            // The server did not start: say what it said.
            let _ = server.child.wait();
            server.wait_for_stderr(Duration::from_secs(1));
            // Taken, so that `Drop` does not print it a second time.
            let said = std::mem::take(&mut *lock(&server.stderr));
            panic!(
                "first line was {line:?}, not `listening on ADDR`; stderr:\n{}",
                String::from_utf8_lossy(&said)
            );
        };
        server.addr = addr.parse().expect("address in the first line");
        server
    }

    /// Everything the server (and its children, which share its stderr)
    /// wrote on stderr, once every one of them has exited: call it after
    /// [`Server::wait_exit`].
    pub fn stderr_to_end(&mut self) -> String {
        if let Some(reader) = self.stderr_reader.take() {
            reader.join().expect("stderr reader");
        }
        self.stderr_so_far()
    }

    /// What the server has written on stderr so far.
    pub fn stderr_so_far(&self) -> String {
        String::from_utf8_lossy(&lock(&self.stderr)).into_owned()
    }

    /// Waits up to `limit` for the stderr pipe to close (every process
    /// holding it has exited).
    fn wait_for_stderr(&mut self, limit: Duration) {
        let start = Instant::now();
        while let Some(reader) = &self.stderr_reader {
            if reader.is_finished() {
                let _ = self.stderr_reader.take().map(thread::JoinHandle::join);
                return;
            }
            if start.elapsed() > limit {
                return;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// The server's process id, for `/proc/PID/…` and for signals.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Reads one more line of the server's stdout, waiting at most
    /// [`PATIENCE`] for it to start: a line that never comes (a signal the
    /// server ignores, such as SIGHUP under `nohup`, which its children
    /// inherit) fails the test with `TimedOut` instead of hanging it.
    pub fn read_stdout_line(&mut self) -> io::Result<String> {
        let deadline = Instant::now() + PATIENCE;
        while !self.stdout.buffer().contains(&b'\n') {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no line on the server's stdout within {PATIENCE:?}"),
                ));
            }
            let timeout = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
            let mut fds = [PollFd::new(
                self.stdout.get_ref().as_fd(),
                PollFlags::POLLIN,
            )];
            match poll(&mut fds, timeout) {
                // Readable, or closed: read_line takes it from here.
                Ok(n) if n > 0 => break,
                Ok(_) | Err(Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        Ok(line)
    }

    /// Connects a client with read and write timeouts of [`PATIENCE`].
    pub fn connect(&self) -> TcpStream {
        connect(self.addr)
    }

    /// Sends a signal by name (`TERM`, `INT`, `KILL`, `USR1`…) with kill(1).
    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -{name} failed");
    }

    /// Waits up to `limit` for the process to exit and returns its status.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// A field of `/proc/PID/status`, e.g. `VmRSS` (in kB) or `Threads`.
    pub fn status_field(&self, field: &str) -> u64 {
        proc_status_field(self.pid(), field)
    }

    /// User plus system CPU time of the process so far, in clock ticks
    /// (normally 100 a second).
    pub fn cpu_ticks(&self) -> u64 {
        proc_cpu_ticks(self.pid())
    }

    /// How many descriptors the process has open.
    pub fn fd_count(&self) -> usize {
        proc_fd_count(self.pid())
    }

    /// The server's pid followed by those of its children (the workers of a
    /// prefork server).
    pub fn tree_pids(&self) -> Vec<u32> {
        let mut pids = vec![self.pid()];
        pids.extend(children_of(self.pid()));
        pids
    }

    /// A `/proc/PID/status` field summed over the server and its children.
    pub fn tree_status_sum(&self, field: &str) -> u64 {
        self.tree_pids()
            .into_iter()
            .map(|pid| proc_status_field(pid, field))
            .sum()
    }

    /// CPU ticks used by the server and its children so far.
    pub fn tree_cpu_ticks(&self) -> u64 {
        self.tree_pids().into_iter().map(proc_cpu_ticks).sum()
    }
}

/// The pids whose parent is `pid`, from `/proc/*/stat`.
pub fn children_of(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&child| {
            std::fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                .and_then(|text| {
                    let after = &text[text.rfind(')')? + 2..];
                    after.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

/// True if a process with this pid exists (running, or a zombie).
pub fn process_exists(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// The state letter of a process from `/proc/PID/stat` (`R` running, `S`
/// sleeping, `T` stopped by a signal, `Z` zombie…), or `None` if it is gone.
pub fn process_state(pid: u32) -> Option<char> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    text[text.rfind(')')? + 1..].trim_start().chars().next()
}

impl Drop for Server {
    /// Kills the server. If the test is failing (this runs while its panic
    /// unwinds), prints what the server wrote on stderr: `eprintln!` here is
    /// captured by libtest and shown under the failure, with the test's own
    /// output.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            // Its children (a prefork server's workers) may hold the pipe a
            // moment longer; do not wait for ever on one that lingers.
            self.wait_for_stderr(Duration::from_secs(1));
            let text = self.stderr_so_far();
            if !text.is_empty() {
                eprintln!("--- stderr of server pid {} ---", self.child.id());
                eprint!("{text}");
                eprintln!("--- end of stderr ---");
            }
        }
    }
}

/// The buffer behind a lock; a panic elsewhere while it was held does not
/// make its bytes less worth showing.
fn lock(buf: &Mutex<Vec<u8>>) -> std::sync::MutexGuard<'_, Vec<u8>> {
    buf.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Connects with read and write timeouts of [`PATIENCE`], so a server that
/// hangs fails the test instead of hanging it.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, PATIENCE).expect("connect");
    stream
        .set_read_timeout(Some(PATIENCE))
        .expect("read timeout");
    stream
        .set_write_timeout(Some(PATIENCE))
        .expect("write timeout");
    stream
}

/// Writes `msg` and reads back exactly as many bytes. A short echo fails
/// saying how many bytes came back, and of how many.
pub fn roundtrip(stream: &mut TcpStream, msg: &[u8]) -> Vec<u8> {
    stream.write_all(msg).expect("write");
    let mut back = vec![0; msg.len()];
    let mut got = 0;
    while got < back.len() {
        match stream.read(&mut back[got..]) {
            Ok(0) => panic!(
                "the echo stopped after {got} of {} bytes: the server closed the connection",
                msg.len()
            ),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => panic!(
                "the echo stopped after {got} of {} bytes: {}",
                msg.len(),
                why_read_failed(&e)
            ),
        }
    }
    back
}

/// A failed read of an echo in words: a timeout is the server going
/// silent, not an error of its own.
fn why_read_failed(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            format!("nothing more came within {PATIENCE:?}")
        }
        _ => e.to_string(),
    }
}

/// Sends `payload` from a second thread while this one reads the echo, as a
/// large echo must be: a client that writes everything before it reads
/// deadlocks once both directions' socket buffers are full. An echo that
/// stops short fails saying how many bytes came back, and of how many.
pub fn echo_large(addr: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let mut stream = connect(addr);
    let mut writer = stream.try_clone().expect("clone");
    let data = payload.to_vec();
    let sender = thread::spawn(move || {
        // A server that stops reading stops this write too; the reader
        // below says so, with the bytes it got.
        writer
            .write_all(&data)
            .and_then(|()| writer.shutdown(Shutdown::Write))
    });
    let mut back = Vec::with_capacity(payload.len());
    if let Err(e) = stream.read_to_end(&mut back) {
        panic!(
            "the echo stopped after {} of {} bytes: {}",
            back.len(),
            payload.len(),
            why_read_failed(&e)
        );
    }
    let _ = sender.join().expect("writer thread");
    back
}

/// True if nothing arrives on `stream` within `wait` (the read times out).
pub fn stays_silent(stream: &mut TcpStream, wait: Duration) -> bool {
    stream.set_read_timeout(Some(wait)).expect("timeout");
    let mut byte = [0u8; 1];
    let until = Instant::now() + wait;
    let silent = loop {
        match stream.read(&mut byte) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                // A signal to this process cut the wait short: wait on.
                let left = until.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break true;
                }
                stream.set_read_timeout(Some(left)).expect("timeout");
            }
            Err(e) => {
                break matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                );
            }
            Ok(_) => break false,
        }
    };
    stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
    silent
}

/// True if the server closed `stream`: a read returns EOF or a reset.
pub fn sees_close(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return false,
        }
    }
}

/// A deterministic, non-repeating-looking payload of `len` bytes.
pub fn payload(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Runs `scripts/NAME ARGS…` with the environment `envs` added, as a
/// reader runs it from the repository, and returns what it printed. For
/// the exercises whose task includes a measurement: their tests run the
/// measuring script on a tiny load and check what it prints, its shape and
/// its sanity (every row there, counts that add up), never a time. The
/// script builds what it runs itself, in `CARGO_TARGET_DIR` when set.
pub fn run_script(name: &str, args: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
    let scripts = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit lives in scripts/");
    Command::new(scripts.join(name))
        .args(args)
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run scripts/{name}: {e}"))
}

/// The rows of the markdown tables in `text`, as trimmed cells; the
/// `|---|` lines under the headers are left out.
pub fn markdown_rows(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .filter_map(|line| line.trim().strip_prefix('|')?.strip_suffix('|'))
        .filter(|inner| !inner.starts_with("---"))
        .map(|inner| inner.split('|').map(|c| c.trim().to_string()).collect())
        .collect()
}

/// True if a command of this name is on the PATH.
pub fn have_tool(name: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Polls `cond` every 10 ms until it holds or `limit` passes.
pub fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if cond() {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// A field of `/proc/PID/status` as a number (`VmRSS` is in kB).
pub fn proc_status_field(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    text.lines()
        .find_map(|line| {
            let rest = line.strip_prefix(field)?.strip_prefix(':')?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// utime + stime from `/proc/PID/stat`, in clock ticks.
pub fn proc_cpu_ticks(pid: u32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read stat");
    // The command name (field 2) may hold spaces; count fields after its ')'.
    let after = &text[text.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After the name, field 3 (state) is index 0; utime is field 14, stime 15.
    fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
}

/// Number of open descriptors of a process.
pub fn proc_fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read fd dir")
        .count()
}

/// Closes `stream` with an RST instead of a FIN (SO_LINGER with a zero
/// timeout), as a crashed or impatient client would.
pub fn reset(stream: TcpStream) {
    use nix::sys::socket::{setsockopt, sockopt::Linger};
    let linger = nix::libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    setsockopt(&stream, Linger, &linger).expect("SO_LINGER");
    drop(stream);
}

/// Raises this process's soft descriptor limit to at least `min` (up to the
/// hard limit), for tests that open thousands of sockets. Servers started
/// afterwards inherit it. Returns the soft limit now in force.
pub fn raise_fd_limit(min: u64) -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    if soft >= min {
        return soft;
    }
    setrlimit(Resource::RLIMIT_NOFILE, min.min(hard), hard).expect("setrlimit");
    min.min(hard)
}

/// For a test that holds many sockets: raises this process's descriptor
/// limit (servers started afterwards inherit it) and returns true if at
/// least `needed` descriptors are allowed. If the hard limit is lower, the
/// test cannot run here: it says so with [`skip`] and returns false, and
/// the caller returns.
///
/// The soft limit is raised to twice `needed` where the hard limit allows:
/// the tests running beside this one in the same process share the limit.
pub fn enough_descriptors(needed: u64) -> bool {
    let limit = raise_fd_limit(needed.saturating_mul(2));
    if limit < needed {
        skip(&format!(
            "needs {needed} descriptors, the hard limit allows {limit}"
        ));
    }
    limit >= needed
}

pub mod cli;
pub mod timeline;

/// A minimal HTTP/1.1 response reader for black-box tests of stage06.
pub mod http {
    use std::io::{self, BufRead, BufReader, Read};
    use std::net::TcpStream;

    /// One response as read off the wire.
    #[derive(Debug)]
    pub struct Response {
        pub status: u16,
        /// Field names in lower case, in order.
        pub headers: Vec<(String, String)>,
        pub body: Vec<u8>,
    }

    impl Response {
        pub fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        }
    }

    /// Reads one response. `head_only`: the request was HEAD (or the
    /// status is one without a body), so no body follows whatever
    /// Content-Length says.
    pub fn read_response(
        reader: &mut BufReader<TcpStream>,
        head_only: bool,
    ) -> io::Result<Response> {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let status = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::other(format!("bad status line {line:?}")))?;
        let mut headers = Vec::new();
        loop {
            let mut field = String::new();
            reader.read_line(&mut field)?;
            let field = field.trim_end();
            if field.is_empty() {
                break;
            }
            let (name, value) = field
                .split_once(':')
                .ok_or_else(|| io::Error::other(format!("bad field {field:?}")))?;
            headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
        }
        let mut response = Response {
            status,
            headers,
            body: Vec::new(),
        };
        let no_body = head_only || status == 304 || status == 204 || status < 200;
        if !no_body {
            let len: usize = response
                .header("content-length")
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| io::Error::other("no Content-Length"))?;
            response.body = vec![0; len];
            reader.read_exact(&mut response.body)?;
        }
        Ok(response)
    }
}

/// Opens `n` connections to `addr` as fast as four threads can, sends
/// `request` on each as soon as it is connected, then reads every answer to
/// EOF. Returns one result per connection: the bytes read, or why none
/// came. A server that drops a connection shows here as an empty answer or
/// a reset; one that hangs, as a timeout after [`PATIENCE`].
///
/// For a server that closes after answering (HTTP with `Connection:
/// close`). An echo server closes only once the client has: use
/// [`burst_with`] and `half_close`.
pub fn burst(addr: SocketAddr, n: usize, request: &[u8]) -> Vec<io::Result<Vec<u8>>> {
    burst_with(addr, n, request, false)
}

/// [`burst`], and with `half_close` each client shuts down its writing side
/// right after its request: an echo server then sees EOF, sends the last of
/// the echo and closes, so reading to EOF ends. Without it, reading an echo
/// to EOF waits for the server's idle timeout.
pub fn burst_with(
    addr: SocketAddr,
    n: usize,
    request: &[u8],
    half_close: bool,
) -> Vec<io::Result<Vec<u8>>> {
    const THREADS: usize = 4;
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let request = request.to_vec();
            let count = n / THREADS + usize::from(t < n % THREADS);
            thread::spawn(move || {
                let streams: Vec<io::Result<TcpStream>> = (0..count)
                    .map(|_| {
                        let mut s = TcpStream::connect_timeout(&addr, PATIENCE)?;
                        s.set_read_timeout(Some(PATIENCE))?;
                        s.write_all(&request)?;
                        if half_close {
                            s.shutdown(Shutdown::Write)?;
                        }
                        Ok(s)
                    })
                    .collect();
                streams
                    .into_iter()
                    .map(|s| {
                        let mut answer = Vec::new();
                        s?.read_to_end(&mut answer)?;
                        Ok(answer)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    handles
        .into_iter()
        .flat_map(|h| h.join().expect("burst thread"))
        .collect()
}
