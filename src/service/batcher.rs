//! The batching rule, as a pure function: which waiting jobs join the batch being formed.

use std::collections::VecDeque;

/// Takes from `pending` (in arrival order) up to `room` jobs that `joins` accepts — those that
/// share the batch's vocabulary — and leaves the others in their order.
pub(crate) fn take_joining<J>(
    pending: &mut VecDeque<J>,
    room: usize,
    joins: impl Fn(&J) -> bool,
) -> Vec<J> {
    let mut taken = Vec::new();
    let mut kept = VecDeque::with_capacity(pending.len());
    for job in pending.drain(..) {
        if taken.len() < room && joins(&job) {
            taken.push(job);
        } else {
            kept.push_back(job);
        }
    }
    *pending = kept;
    taken
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_of_the_batch_vocabulary_join_in_order_and_the_rest_keep_theirs() {
        let mut pending: VecDeque<(char, u32)> =
            [('a', 1), ('b', 2), ('a', 3), ('c', 4), ('a', 5)].into();
        let taken = take_joining(&mut pending, 2, |j| j.0 == 'a');
        assert_eq!(taken, [('a', 1), ('a', 3)]);
        assert_eq!(Vec::from(pending.clone()), [('b', 2), ('c', 4), ('a', 5)]);
        assert!(take_joining(&mut pending, 0, |_| true).is_empty());
        assert_eq!(take_joining(&mut pending, 9, |j| j.0 == 'z'), []);
        assert_eq!(pending.len(), 3);
    }
}
