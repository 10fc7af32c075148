//! Black-box tests of stage 2, run for all four trigger combinations.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use testkit::{
    PATIENCE, Server, echo_large, eventually, payload, reset, roundtrip, sees_close, stays_silent,
};

const BIN: &str = env!("CARGO_BIN_EXE_stage02-epoll");

/// (connection trigger, listener trigger)
const COMBOS: [(&str, &str); 4] = [("lt", "lt"), ("lt", "et"), ("et", "lt"), ("et", "et")];

fn start(trigger: &str, listen: &str, extra: &[&str]) -> Server {
    let mut args = vec![
        "--addr",
        "127.0.0.1:0",
        "--trigger",
        trigger,
        "--listen-trigger",
        listen,
    ];
    args.extend_from_slice(extra);
    Server::start(BIN, &args)
}

/// True once a new client gets its echo again (within [`PATIENCE`]).
fn served_again(server: &Server) -> bool {
    eventually(PATIENCE, || {
        let mut c = server.connect();
        c.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        c.write_all(b"again").is_ok() && {
            let mut b = [0u8; 5];
            c.read_exact(&mut b).is_ok() && &b == b"again"
        }
    })
}

fn for_each_combo(test: impl Fn(&str, &str)) {
    for (trigger, listen) in COMBOS {
        eprintln!("--trigger {trigger} --listen-trigger {listen}");
        test(trigger, listen);
    }
}

/// Sent in one write, 1 MiB arrives at the server as many reads' worth: the
/// edge-triggered read-once bug loses everything after the first read.
#[test]
fn one_mib_in_one_write_comes_back_byte_exact() {
    for_each_combo(|trigger, listen| {
        let server = start(trigger, listen, &[]);
        let data = payload(1 << 20);
        let back = echo_large(server.addr, &data);
        assert!(
            back.len() == data.len(),
            "{trigger}/{listen}: {} of {} bytes came back before the server closed",
            back.len(),
            data.len()
        );
        assert!(back == data, "{trigger}/{listen}: echo differs");
    });
}

#[test]
fn five_hundred_concurrent_clients() {
    // 500 sockets here and as many in the server, each with its own few.
    if !testkit::enough_descriptors(600) {
        return;
    }
    for_each_combo(|trigger, listen| {
        let server = start(trigger, listen, &[]);
        let mut clients: Vec<TcpStream> = (0..500).map(|_| server.connect()).collect();
        // Every connection is open at once; send on all, then read all.
        for (i, c) in clients.iter_mut().enumerate() {
            c.write_all(format!("client {i:04}").as_bytes()).unwrap();
        }
        for (i, c) in clients.iter_mut().enumerate() {
            let mut back = [0u8; 11];
            c.read_exact(&mut back).unwrap();
            assert_eq!(back, *format!("client {i:04}").as_bytes());
        }
    });
}

/// A burst of connections arrives as one edge on the listener; an
/// edge-triggered accept that takes only one leaves the rest in the queue.
#[test]
fn two_hundred_connections_in_one_burst_are_all_accepted() {
    if !testkit::enough_descriptors(300) {
        return;
    }
    for_each_combo(|trigger, listen| {
        let server = start(trigger, listen, &[]);
        let mut clients: Vec<TcpStream> = (0..200).map(|_| server.connect()).collect();
        for (i, c) in clients.iter_mut().enumerate() {
            let msg = format!("burst {i:03}");
            assert_eq!(
                roundtrip(c, msg.as_bytes()),
                msg.as_bytes(),
                "{trigger}/{listen}"
            );
        }
    });
}

/// A client that sends without ever reading: the server must stop reading
/// from it (its memory stays bounded) and keep serving everybody else.
#[test]
fn a_client_that_never_reads_stalls_nobody_and_memory_stays_bounded() {
    for_each_combo(|trigger, listen| {
        let server = start(trigger, listen, &[]);
        let rss_before = server.status_field("VmRSS");

        let hog = server.connect();
        hog.set_write_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let written = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (written, stop) = (Arc::clone(&written), Arc::clone(&stop));
            let mut hog = hog.try_clone().unwrap();
            thread::spawn(move || {
                let chunk = vec![b'x'; 64 * 1024];
                // Up to 256 MiB; the server should stop us long before.
                while !stop.load(Ordering::SeqCst) && written.load(Ordering::SeqCst) < 256 << 20 {
                    match hog.write(&chunk) {
                        Ok(n) => {
                            written.fetch_add(n, Ordering::SeqCst);
                        }
                        Err(_) => thread::sleep(Duration::from_millis(10)),
                    }
                }
            })
        };
        // Wait until the hog's writes stall: progress stops for 300 ms.
        let mut last = 0;
        let stalled = eventually(PATIENCE, || {
            thread::sleep(Duration::from_millis(300));
            let now = written.load(Ordering::SeqCst);
            let stalled = now == last;
            last = now;
            stalled
        });
        assert!(
            stalled,
            "{trigger}/{listen}: the hog was never stopped: the server read {} bytes from a \
             client that never reads, and kept reading (no high-water mark on its output?)",
            written.load(Ordering::SeqCst)
        );

        let mut other = server.connect();
        assert_eq!(roundtrip(&mut other, b"not starved"), b"not starved");

        // The bound is 1 MiB of pending output plus one 64 KiB read, plus
        // allocator slack; 16 MiB of growth would mean we kept reading.
        let growth_kib = server.status_field("VmRSS").saturating_sub(rss_before);
        assert!(
            growth_kib < 16 * 1024,
            "{trigger}/{listen}: RSS grew {growth_kib} KiB after the hog sent {} bytes: the \
             output kept growing past its high-water mark",
            written.load(Ordering::SeqCst)
        );
        stop.store(true, Ordering::SeqCst);
        writer.join().unwrap();
    });
}

/// The client resets while the server still has output for it.
#[test]
fn client_reset_is_survived() {
    for_each_combo(|trigger, listen| {
        let server = start(trigger, listen, &[]);
        for _ in 0..20 {
            let mut c = server.connect();
            let _ = c.write_all(&payload(256 * 1024));
            reset(c);
        }
        let mut c = server.connect();
        assert_eq!(roundtrip(&mut c, b"alive"), b"alive");
    });
}

/// The client sends, then shuts down its writing side: it must still get
/// every byte back, then see the server close.
#[test]
fn half_close_gets_the_rest_of_the_echo_then_eof() {
    for_each_combo(|trigger, listen| {
        let server = start(trigger, listen, &[]);
        let mut c = server.connect();
        c.write_all(b"last words").unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        let mut back = Vec::new();
        c.read_to_end(&mut back).unwrap();
        assert_eq!(back, b"last words", "{trigger}/{listen}");
    });
}

/// A half-close that reaches the server while it still owes a slow reader
/// most of its echo: EOF (`read` returning 0) is not an error, and the
/// connection closes only once everything owed is written.
#[test]
fn half_close_with_a_slow_reader_gets_every_byte_back() {
    for_each_combo(|trigger, listen| {
        let server = start(trigger, listen, &[]);
        let data = payload(4 << 20);
        let c = server.connect();
        let mut writer = c.try_clone().unwrap();
        let sent = data.clone();
        let sender = thread::spawn(move || {
            writer.write_all(&sent).unwrap();
            writer.shutdown(Shutdown::Write).unwrap();
        });
        // The reader takes 16 KiB a millisecond, so the server's output may
        // still be waiting when the EOF arrives: how much depends on the
        // kernel's buffers. (The unit test
        // eof_with_output_owed_keeps_the_connection_to_write_it makes sure.)
        let mut reader = c;
        let mut back = Vec::with_capacity(data.len());
        let mut buf = vec![0u8; 16 * 1024];
        let end = loop {
            match reader.read(&mut buf) {
                Ok(0) => break "the server closed the connection".to_string(),
                Ok(n) => back.extend_from_slice(&buf[..n]),
                Err(e) => break format!("the read failed: {e}"),
            }
            thread::sleep(Duration::from_millis(1));
        };
        assert!(
            back.len() == data.len(),
            "{trigger}/{listen}: after a half-close, {} of {} bytes came back, then {end}: \
             the echo still owed at EOF was dropped (is Ok(0) taken for an error?)",
            back.len(),
            data.len()
        );
        assert!(back == data, "{trigger}/{listen}: echo differs");
        sender.join().unwrap();
    });
}

#[test]
fn over_max_conns_is_closed_at_once() {
    for_each_combo(|trigger, listen| {
        let server = start(trigger, listen, &["--max-conns", "3"]);
        let mut kept: Vec<TcpStream> = (0..3).map(|_| server.connect()).collect();
        for c in &mut kept {
            assert_eq!(roundtrip(c, b"in"), b"in");
        }
        let mut extra = server.connect();
        let _ = extra.write_all(b"me too");
        assert!(sees_close(&mut extra), "{trigger}/{listen}");
        // A slot freed is a slot available again.
        drop(kept.pop());
        assert!(
            served_again(&server),
            "{trigger}/{listen}: not served again"
        );
    });
}

/// With a descriptor limit of 32, the 40 clients past it are shed (each sees
/// its connection closed), the loop does not spin, and service resumes once
/// descriptors free up.
#[test]
fn out_of_descriptors_sheds_clients_without_spinning() {
    for_each_combo(|trigger, listen| {
        let server = Server::start_with_nofile(
            32,
            BIN,
            &[
                "--addr",
                "127.0.0.1:0",
                "--trigger",
                trigger,
                "--listen-trigger",
                listen,
            ],
        );
        let mut clients: Vec<TcpStream> = Vec::new();
        let mut shed = 0;
        for _ in 0..60 {
            let mut c = server.connect();
            c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            if c.write_all(b"hi").is_err() {
                shed += 1;
                continue;
            }
            let mut b = [0u8; 2];
            match c.read(&mut b) {
                Ok(2) => clients.push(c),
                // EOF or reset: shed, the clear answer we want.
                Ok(0) => shed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => shed += 1,
                other => panic!("{trigger}/{listen}: client hung or got {other:?}"),
            }
        }
        assert!(shed > 0, "{trigger}/{listen}: nobody was shed at 32 fds");
        assert!(
            clients.len() > 20,
            "{trigger}/{listen}: only {}",
            clients.len()
        );

        // No busy loop: over half a second, far less than half a second of CPU.
        let before = server.cpu_ticks();
        thread::sleep(Duration::from_millis(500));
        let used = server.cpu_ticks() - before;
        assert!(used < 25, "{trigger}/{listen}: {used} ticks in 0.5 s");

        clients.clear();
        assert!(
            served_again(&server),
            "{trigger}/{listen}: not served again"
        );
    });
}

#[test]
fn silent_clients_are_not_answered() {
    let server = start("et", "et", &[]);
    let mut c = server.connect();
    assert!(stays_silent(&mut c, Duration::from_millis(100)));
    assert_eq!(roundtrip(&mut c, b"x"), b"x");
}

/// A client that streams without pause always has data waiting. Draining it
/// "until EAGAIN" then never ends, and under ET the loop would serve nobody
/// else: each event gets a read budget, then the next client's turn.
#[test]
fn a_streaming_client_does_not_starve_others() {
    for_each_combo(|trigger, listen| {
        let server = start(trigger, listen, &[]);
        let streamer = server.connect();
        let stop = Arc::new(AtomicBool::new(false));
        let mut sender = streamer.try_clone().unwrap();
        let send_stop = Arc::clone(&stop);
        let writer = thread::spawn(move || {
            let chunk = vec![b's'; 64 * 1024];
            let start = std::time::Instant::now();
            while !send_stop.load(Ordering::SeqCst) && start.elapsed() < PATIENCE {
                if sender.write_all(&chunk).is_err() {
                    break;
                }
            }
            let _ = sender.shutdown(Shutdown::Write);
        });
        let mut receiver = streamer.try_clone().unwrap();
        let reader = thread::spawn(move || {
            let mut buf = vec![0u8; 256 * 1024];
            while matches!(receiver.read(&mut buf), Ok(n) if n > 0) {}
        });
        thread::sleep(Duration::from_millis(200));

        let mut other = server.connect();
        other
            .set_read_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        other.write_all(b"my turn").unwrap();
        let mut back = [0u8; 7];
        let served = other.read_exact(&mut back).is_ok();
        stop.store(true, Ordering::SeqCst);
        writer.join().unwrap();
        reset(streamer);
        reader.join().unwrap();
        assert!(
            served,
            "{trigger}/{listen}: starved behind a streaming client"
        );
        assert_eq!(&back, b"my turn");
    });
}

/// The hint on stderr is a command nc accepts: host and port as two
/// arguments (nc rejects `HOST:PORT`).
#[test]
fn the_hint_names_host_and_port_as_nc_wants_them() {
    let server = start("lt", "lt", &[]);
    let hint = format!("try it: nc {} {} (", server.addr.ip(), server.addr.port());
    assert!(
        eventually(PATIENCE, || server.stderr_so_far().contains(&hint)),
        "no {hint:?} in {:?}",
        server.stderr_so_far()
    );
}
