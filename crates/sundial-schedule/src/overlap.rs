//! Overlap policies: given the starts waiting in a schedule's buffer and whether one of its
//! workflows is still running, which starts happen now, which wait, which are skipped, and
//! whether the running workflow must be cancelled or terminated first.

use crate::api::enums::v1::ScheduleOverlapPolicy as Policy;

/// What to do with a buffer. Starts are referred to by their index in the input buffer.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BufferDecision {
    /// Starts that may overlap anything (ALLOW_ALL): all of them start now.
    pub overlapping: Vec<usize>,
    /// The one start that does not overlap (nothing of the schedule's is running).
    pub exclusive: Option<usize>,
    /// Starts kept for later, in order.
    pub kept: Vec<usize>,
    /// Starts dropped because of their policy.
    pub skipped: usize,
    pub cancel_running: bool,
    pub terminate_running: bool,
}

/// Decides a buffer. `policy_of(i)` is start `i`'s policy, already resolved against the
/// schedule's (never UNSPECIFIED).
pub fn decide(len: usize, running: bool, policy_of: impl Fn(usize) -> Policy) -> BufferDecision {
    let mut d = BufferDecision::default();
    for i in 0..len {
        let policy = policy_of(i);
        if policy == Policy::AllowAll {
            d.overlapping.push(i);
            continue;
        }
        if !running && d.exclusive.is_none() {
            d.exclusive = Some(i);
            continue;
        }
        match policy {
            Policy::BufferOne => {
                if d.kept.is_empty() {
                    d.kept.push(i);
                } else {
                    d.skipped += 1;
                }
            }
            Policy::BufferAll => d.kept.push(i),
            Policy::CancelOther | Policy::TerminateOther if running => {
                if policy == Policy::CancelOther {
                    d.cancel_running = true;
                } else {
                    d.terminate_running = true;
                }
                // It starts once the running one has closed.
                d.kept.push(i);
            }
            // Nothing runs yet: this later start replaces the one chosen before it.
            Policy::CancelOther | Policy::TerminateOther => d.exclusive = Some(i),
            Policy::Skip | Policy::Unspecified | Policy::AllowAll => d.skipped += 1,
        }
    }
    if d.cancel_running || d.terminate_running {
        // Whatever would overlap is about to be cancelled or terminated as well.
        d.overlapping.clear();
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(policy: Policy, len: usize, running: bool) -> BufferDecision {
        decide(len, running, |_| policy)
    }

    #[test]
    fn skip_starts_one_when_idle_and_none_while_running() {
        let d = all(Policy::Skip, 3, false);
        assert_eq!(d.exclusive, Some(0));
        assert_eq!(d.skipped, 2);
        let d = all(Policy::Skip, 2, true);
        assert_eq!(d.exclusive, None);
        assert_eq!(d.skipped, 2);
        assert!(d.kept.is_empty());
    }

    #[test]
    fn buffer_one_keeps_the_first_overlap() {
        let d = all(Policy::BufferOne, 3, true);
        assert_eq!(d.kept, vec![0]);
        assert_eq!(d.skipped, 2);
        let d = all(Policy::BufferOne, 3, false);
        assert_eq!(d.exclusive, Some(0));
        assert_eq!(d.kept, vec![1]);
        assert_eq!(d.skipped, 1);
    }

    #[test]
    fn buffer_all_keeps_every_overlap_in_order() {
        let d = all(Policy::BufferAll, 3, false);
        assert_eq!(d.exclusive, Some(0));
        assert_eq!(d.kept, vec![1, 2]);
        assert_eq!(d.skipped, 0);
    }

    #[test]
    fn cancel_and_terminate_other_replace_the_running_one() {
        let d = all(Policy::CancelOther, 1, true);
        assert!(d.cancel_running && !d.terminate_running);
        assert_eq!(d.kept, vec![0]);
        let d = all(Policy::TerminateOther, 1, true);
        assert!(d.terminate_running);
        assert_eq!(d.kept, vec![0]);
        // Idle: the latest of several waiting starts wins.
        let d = all(Policy::TerminateOther, 3, false);
        assert_eq!(d.exclusive, Some(2));
        assert_eq!(d.skipped, 0);
    }

    #[test]
    fn allow_all_starts_everything_unless_something_is_being_replaced() {
        let d = all(Policy::AllowAll, 3, true);
        assert_eq!(d.overlapping, vec![0, 1, 2]);
        let d = decide(2, true, |i| {
            if i == 0 {
                Policy::AllowAll
            } else {
                Policy::TerminateOther
            }
        });
        assert!(d.overlapping.is_empty());
        assert!(d.terminate_running);
    }
}
