//! The chapter's exercises, one test each. They fail on the stage as
//! shipped and pass once the exercise is done:
//!
//! ```text
//! cargo test -p stage02-epoll --test exercises -- --ignored ex2_1
//! ```

use std::io::{Read, Write};
use std::net::Shutdown;
use std::thread;
use std::time::Duration;

use testkit::{Server, echo_large, payload, roundtrip};

const BIN: &str = env!("CARGO_BIN_EXE_stage02-epoll");

fn start(args: &[&str]) -> Server {
    let mut all = vec!["--addr", "127.0.0.1:0"];
    all.extend_from_slice(args);
    Server::start(BIN, &all)
}

#[test]
#[ignore = "ex2.1 (easy): reproduce the edge-triggered read-once bug behind --et-read-once"]
fn ex2_1_read_once_under_edge_triggering_strands_data() {
    let server = start(&["--trigger", "et", "--et-read-once"]);
    let data = payload(1 << 20);
    let mut client = server.connect();
    let mut reader = client.try_clone().unwrap();
    let sender = thread::spawn(move || {
        let _ = client.write_all(&data);
        let _ = client.shutdown(Shutdown::Write);
    });
    // With the bug, bytes left in the socket after the last edge are never
    // read: the echo stops short and the connection never closes.
    reader
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut back = Vec::new();
    let _ = reader.read_to_end(&mut back);
    let _ = sender.join();
    assert!(
        back.len() < 1 << 20,
        "all {} bytes came back: the bug is not reproduced",
        back.len()
    );
}

#[test]
#[ignore = "ex2.2 (medium): EPOLLONESHOT as a third trigger mode (--trigger oneshot)"]
fn ex2_2_oneshot_echoes_byte_exact_and_serves_many() {
    let server = start(&["--trigger", "oneshot"]);
    let data = payload(1 << 20);
    assert!(echo_large(server.addr, &data) == data, "1 MiB echo differs");
    let mut clients: Vec<_> = (0..50).map(|_| server.connect()).collect();
    for round in 0..3 {
        for (i, c) in clients.iter_mut().enumerate() {
            let msg = format!("{round}:{i}");
            assert_eq!(roundtrip(c, msg.as_bytes()), msg.as_bytes());
        }
    }
}

#[test]
#[ignore = "ex2.3 (medium): --reads-per-event, the edge-triggered read budget as a flag"]
fn ex2_3_a_read_budget_of_one_still_echoes_byte_exact() {
    for budget in ["1", "64"] {
        let server = start(&["--trigger", "et", "--reads-per-event", budget]);
        let data = payload(1 << 20);
        assert!(
            echo_large(server.addr, &data) == data,
            "budget {budget}: 1 MiB echo differs"
        );
    }
}
