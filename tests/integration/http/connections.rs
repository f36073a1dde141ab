//! Connections (issue 15 item 4): half-sent headers and idle keep-alive connections are closed
//! after the header timeout, shutdown is not held by them, the connection limit queues new
//! connections instead of failing, and request bodies in flight are bounded (their refusals
//! paced).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Instant;

use super::*;
use crate::common::*;

fn connect(s: &Server) -> TcpStream {
    let addr = s.base.trim_start_matches("http://");
    TcpStream::connect(addr).expect("connect")
}

/// Whether the server closed the connection (end of stream or reset) within `within`.
fn closed_within(conn: &mut TcpStream, within: Duration) -> bool {
    conn.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match conn.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue, // a response (e.g. to the idle connection's request): read on
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false;
            }
            Err(_) => return true, // reset
        }
    }
}

/// Three connections no request is in flight on: headers half sent, a finished keep-alive
/// request, and one that never sent a byte.
fn quiet_connections(s: &Server) -> Vec<TcpStream> {
    let mut half = connect(s);
    half.write_all(b"POST /v1/detect HTTP/1.1\r\nHost: x\r\nContent-Ty")
        .unwrap();
    let mut idle = connect(s);
    idle.write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut head = [0u8; 12];
    idle.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    let silent = connect(s);
    vec![half, idle, silent]
}

#[test]
fn slow_and_idle_connections_are_closed_after_the_header_timeout() {
    let s = Server::start("random", &["--header-timeout-ms", "1000"]);
    for (i, mut conn) in quiet_connections(&s).into_iter().enumerate() {
        assert!(
            closed_within(&mut conn, Duration::from_secs(60)),
            "connection {i} (half-sent headers, idle keep-alive, silent) still open"
        );
    }
    // The server is as it was.
    let r = client().get(s.url("/health/live")).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

#[test]
fn shutdown_is_not_held_by_half_open_or_idle_connections() {
    // Header timeout and grace far above the bound below: only closing quiet connections at
    // once lets the process exit within it.
    let s = Server::start(
        "random",
        &[
            "--header-timeout-ms",
            "600000",
            "--shutdown-grace-ms",
            "120000",
        ],
    );
    let conns = quiet_connections(&s);
    let start = Instant::now();
    let status = s.terminate();
    let took = start.elapsed();
    assert_eq!(status.code(), Some(0));
    assert!(
        took < Duration::from_secs(60),
        "SIGTERM held for {took:?} by connections without a request"
    );
    drop(conns);
}

#[test]
fn at_the_connection_limit_new_connections_wait_for_a_free_slot() {
    let s = Server::start(
        "random",
        &["--max-connections", "2", "--header-timeout-ms", "1500"],
    );
    // Two silent connections take both slots; accepting them is what the `live` answer
    // below waits behind.
    let mut held: Vec<TcpStream> = (0..2).map(|_| connect(&s)).collect();
    let r = client().get(s.url("/health/live")).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // It was answered only once the header timeout had closed a held connection.
    assert!(
        held.iter_mut()
            .any(|c| closed_within(c, Duration::from_secs(5))),
        "a third connection was served while both slots were held"
    );
}

#[test]
fn request_bodies_in_flight_are_bounded_before_any_byte_is_read() {
    let s = Server::start(
        "random",
        &[
            "--max-inflight-body-bytes",
            "1000000",
            "--overload-delay-ms",
            "400",
        ],
    );
    // An upload of 900 kB, headers and a first slice sent, then held: it holds 900 kB of the
    // budget.
    let mut slow = connect(&s);
    slow.write_all(
        b"POST /v1/detect HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n\
          Content-Length: 900000\r\n\r\n\xff\xd8",
    )
    .unwrap();
    // Wait until the server counts it (it is in flight once its headers are read).
    let image = image_bytes("bus.jpg");
    assert!(
        image.len() > 100_000,
        "the test image is smaller than the room left"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let (status, body, took) = loop {
        let sent = Instant::now();
        let (status, body) = json(
            client()
                .post(s.url("/v1/detect"))
                .header("content-type", "image/jpeg")
                .body(image.clone())
                .send()
                .unwrap(),
        );
        if status == 429 || Instant::now() > deadline {
            break (status, body, sent.elapsed());
        }
    };
    assert_eq!(status, 429, "{body}");
    // Overload refusals are paced (`overload_delay_ms`): never sooner than the delay.
    assert!(took >= Duration::from_millis(400), "refused after {took:?}");
    assert_eq!(body["error_type"], "overloaded", "{body}");
    // The held upload gone, the budget is whole again.
    drop(slow);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = client()
            .post(s.url("/v1/detect"))
            .header("content-type", "image/jpeg")
            .body(image.clone())
            .send()
            .unwrap();
        if r.status().as_u16() == 200 {
            break;
        }
        assert_eq!(r.status().as_u16(), 429);
        assert!(Instant::now() < deadline, "the budget was not given back");
    }
}
