//! SIGTERM: in-flight requests finish, then the process exits 0.

use super::*;
use crate::common::*;

#[test]
fn sigterm_finishes_in_flight_requests_then_exits_zero() {
    let s = Server::start("random", &[]);
    let url = s.url("/v1/detect");
    let body = image_bytes("bus.jpg");
    let inflight: Vec<_> = (0..4)
        .map(|_| {
            let (u, b) = (url.clone(), body.clone());
            std::thread::spawn(move || {
                client()
                    .post(u)
                    .header("content-type", "image/jpeg")
                    .body(b)
                    .send()
                    .map(|r| r.status().as_u16())
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(30));
    let status = s.terminate();
    assert_eq!(status.code(), Some(0));
    for h in inflight {
        // each request either completed or was never accepted; none saw a broken answer
        if let Ok(code) = h.join().unwrap() {
            assert_eq!(code, 200);
        }
    }
}
