//! Two-stage pipelining for batch jobs: a helper thread prepares the next frames (read, decode,
//! letterbox) while the caller's thread runs the detector on the current one.

use std::sync::mpsc;

/// Runs `prepare` over `items` on a helper thread, at most `ahead` items ahead of `consume`,
/// which runs on the calling thread and sees the prepared items in input order. Returns what
/// `consume` returned, in order; the first `Err` from `consume` stops both stages.
///
/// With `ahead = 0` there is no helper thread: each item is prepared, then consumed (the serial
/// baseline the pipelined throughput is compared with).
pub fn pipelined<I, P, R, E>(
    items: impl IntoIterator<Item = I, IntoIter: Send>,
    ahead: usize,
    prepare: impl Fn(I) -> P + Send + Sync,
    mut consume: impl FnMut(P) -> Result<R, E>,
) -> Result<Vec<R>, E>
where
    P: Send,
{
    let items = items.into_iter();
    let mut out = Vec::with_capacity(items.size_hint().0);
    if ahead == 0 {
        for item in items {
            out.push(consume(prepare(item))?);
        }
        return Ok(out);
    }
    std::thread::scope(|scope| {
        // The channel holds `ahead - 1` items; the helper holds one more while it waits.
        let (tx, rx) = mpsc::sync_channel::<P>(ahead - 1);
        let prepare = &prepare;
        scope.spawn(move || {
            for item in items {
                if tx.send(prepare(item)).is_err() {
                    return; // the consumer stopped
                }
            }
        });
        for prepared in rx {
            out.push(consume(prepared)?);
        }
        Ok(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Barrier};

    #[test]
    fn keeps_order_and_stops_at_the_first_error() {
        for ahead in [0, 1, 3] {
            let got: Result<Vec<u32>, String> =
                pipelined(0..50u32, ahead, |i| i * 2, |p| Ok::<_, String>(p + 1));
            assert_eq!(got.unwrap(), (0..50).map(|i| i * 2 + 1).collect::<Vec<_>>());
            let prepared = AtomicUsize::new(0);
            let got: Result<Vec<u32>, String> = pipelined(
                0..1000u32,
                ahead,
                |i| {
                    prepared.fetch_add(1, Ordering::Relaxed);
                    i
                },
                |p| {
                    if p == 3 {
                        Err(format!("item {p}"))
                    } else {
                        Ok(p)
                    }
                },
            );
            assert_eq!(got.unwrap_err(), "item 3");
            // The helper stops soon after: never more than `ahead` items beyond the failure.
            assert!(
                prepared.load(Ordering::Relaxed) <= 4 + ahead,
                "ahead {ahead}"
            );
        }
    }

    #[test]
    fn prepares_the_next_item_while_the_current_one_is_consumed() {
        // consume(0) waits until prepare(1) has started: it deadlocks unless the two overlap.
        let met = Arc::new(Barrier::new(2));
        let got: Result<Vec<u32>, ()> = pipelined(
            0..3u32,
            1,
            |i| {
                if i == 1 {
                    met.wait();
                }
                i
            },
            |p| {
                if p == 0 {
                    met.wait();
                }
                Ok(p)
            },
        );
        assert_eq!(got.unwrap(), [0, 1, 2]);
    }
}
