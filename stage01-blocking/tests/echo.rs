//! Black-box tests of stage 1 over real sockets.

use std::io::Write;
use std::thread;
use std::time::Duration;

use testkit::{Server, echo_large, payload, reset, roundtrip, sees_close, stays_silent};

const BIN: &str = env!("CARGO_BIN_EXE_stage01-blocking");

fn start(mode: &str, extra: &[&str]) -> Server {
    let mut args = vec!["--addr", "127.0.0.1:0", "--mode", mode];
    args.extend_from_slice(extra);
    Server::start(BIN, &args)
}

fn one_mib_comes_back_byte_exact(mode: &str) {
    let server = start(mode, &[]);
    let data = payload(1 << 20);
    let back = echo_large(server.addr, &data);
    assert_eq!(back.len(), data.len());
    assert!(back == data, "echo differs from what was sent");
}

#[test]
fn iterative_echoes_one_mib_byte_exact() {
    one_mib_comes_back_byte_exact("iterative");
}

#[test]
fn threads_echoes_one_mib_byte_exact() {
    one_mib_comes_back_byte_exact("threads");
}

#[test]
fn pool_echoes_one_mib_byte_exact() {
    one_mib_comes_back_byte_exact("pool");
}

/// The lesson of iterative mode: while one client is connected, the next one
/// is accepted by the kernel but nobody reads from it.
#[test]
fn iterative_serves_second_client_only_after_first_leaves() {
    let server = start("iterative", &[]);
    let mut first = server.connect();
    assert_eq!(roundtrip(&mut first, b"first"), b"first");

    let mut second = server.connect();
    second.write_all(b"second").unwrap();
    assert!(
        stays_silent(&mut second, Duration::from_millis(500)),
        "the second client was served while the first was still connected"
    );

    drop(first);
    let mut back = [0u8; 6];
    std::io::Read::read_exact(&mut second, &mut back).unwrap();
    assert_eq!(&back, b"second");
}

fn hundred_concurrent_clients(mode: &str) {
    let server = start(mode, &[]);
    let addr = server.addr;
    let clients: Vec<_> = (0..100)
        .map(|i| {
            thread::spawn(move || {
                let mut stream = testkit::connect(addr);
                let msg = format!("hello from client {i}");
                roundtrip(&mut stream, msg.as_bytes()) == msg.as_bytes()
            })
        })
        .collect();
    for client in clients {
        assert!(client.join().unwrap(), "a client got the wrong echo");
    }
}

#[test]
fn threads_serves_100_concurrent_clients() {
    hundred_concurrent_clients("threads");
}

#[test]
fn pool_serves_100_concurrent_clients() {
    hundred_concurrent_clients("pool");
}

/// A pool of two blocking threads is iterative mode twice over: the third
/// client waits until one of the first two leaves.
#[test]
fn pool_of_two_blocks_the_third_client() {
    let server = start("pool", &["--threads", "2"]);
    let mut first = server.connect();
    let mut second = server.connect();
    assert_eq!(roundtrip(&mut first, b"one"), b"one");
    second.write_all(b"two").unwrap();
    let mut back = [0u8; 3];
    second
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert!(
        std::io::Read::read_exact(&mut second, &mut back).is_ok() && &back == b"two",
        "a pool of two did not serve a second client while the first was connected: \
         is the receiver's lock held while a job runs?"
    );
    second.set_read_timeout(Some(testkit::PATIENCE)).unwrap();

    let mut third = server.connect();
    third.write_all(b"three").unwrap();
    assert!(
        stays_silent(&mut third, Duration::from_millis(500)),
        "the third client was served while both pool threads were busy"
    );

    drop(first);
    let mut back = [0u8; 5];
    std::io::Read::read_exact(&mut third, &mut back).unwrap();
    assert_eq!(&back, b"three");
    assert_eq!(roundtrip(&mut second, b"still here"), b"still here");
}

/// Idle workers sleep in `recv`: over half a second with no client, an
/// idle pool uses next to no CPU. (A worker that polls `try_recv` in a loop
/// passes every other test, and burns a core per worker.)
#[test]
fn pool_workers_sleep_while_idle() {
    let server = start("pool", &["--threads", "4"]);
    let mut client = server.connect();
    assert_eq!(roundtrip(&mut client, b"warm"), b"warm");
    drop(client);
    let before = server.cpu_ticks();
    thread::sleep(Duration::from_millis(500));
    let used = server.cpu_ticks() - before;
    // A tick is 10 ms: 25 is half the wall time, far above an idle
    // process's 0 or 1, far below what four spinning workers take.
    assert!(
        used < 25,
        "an idle pool used {used} ticks of CPU in 0.5 s: its workers spin (polling try_recv?) \
         instead of sleeping in recv"
    );
}

/// A client that resets its connection (RST, via SO_LINGER 0) while the
/// server is writing to it must not end the process.
fn reset_does_not_kill(mode: &str) {
    let server = start(mode, &[]);
    for _ in 0..20 {
        let stream = server.connect();
        let mut writer = stream.try_clone().unwrap();
        // Send plenty so the server is mid-write when the reset lands.
        let _ = writer.write_all(&payload(256 * 1024));
        reset(stream);
    }
    let mut client = server.connect();
    assert_eq!(roundtrip(&mut client, b"alive"), b"alive");
}

#[test]
fn iterative_survives_client_reset() {
    reset_does_not_kill("iterative");
}

#[test]
fn threads_survives_client_reset() {
    reset_does_not_kill("threads");
}

#[test]
fn pool_survives_client_reset() {
    reset_does_not_kill("pool");
}

#[test]
fn eof_closes_the_connection() {
    let server = start("threads", &[]);
    let mut client = server.connect();
    assert_eq!(roundtrip(&mut client, b"bye"), b"bye");
    client.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(sees_close(&mut client));
}
