//! A rendezvous gate that proves which requests a client sends at the same time, without measuring time.
//!
//! [`super::Sandbox::set_gate`] arms the gate for one instance with a list of group sizes, e.g. `[4, 5]`.
//! Every HTTP request attributed to that instance (any host) and every DNS question about its names joins
//! the current group and is held there, unanswered, until the group holds as many requests as its size;
//! then all of them are answered together and the next request starts the next group. A client that sends
//! its requests one after the other can never fill a group of two or more: after [`GATE_GIVE_UP`] the group
//! (by default) is released anyway and reported as broken, so a wrong client fails the test instead of hanging it.
//! Once every group has passed, the gate lets everything through.
//!
//! [`super::Sandbox::gate_report`] lists, per group, the requests that met there (`GET /v1/instance`,
//! `DNS clkmail.acme.com`) and whether the group filled.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// How long a group waits for its last member before it is released as broken. A liveness bound only:
/// a client that sends the group's requests together fills it at once.
pub const GATE_GIVE_UP: Duration = Duration::from_secs(10);

/// One group of the gate, as it passed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateGroup {
    /// How many requests the group waited for.
    pub size: usize,
    /// The requests that met in the group, in order of arrival (`METHOD path` or `DNS name`).
    pub members: Vec<String>,
    /// True when the group filled; false when it was released after [`GATE_GIVE_UP`].
    pub filled: bool,
}

struct OpenGroup {
    id: u64,
    size: usize,
    members: Vec<String>,
    release: watch::Sender<bool>,
}

#[derive(Default)]
struct GateState {
    instance: Option<usize>,
    sizes: VecDeque<usize>,
    open: Option<OpenGroup>,
    give_up: Duration,
    next_id: u64,
    passed: Vec<GateGroup>,
}

/// The gate shared by the sandbox's servers.
#[derive(Default, Clone)]
pub(crate) struct Gate {
    state: Arc<Mutex<GateState>>,
}

impl Gate {
    fn lock(&self) -> MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Arms the gate for `instance` with these group sizes, a group giving up after `give_up`; forgets
    /// any earlier report.
    pub(crate) fn arm(&self, instance: usize, sizes: Vec<usize>, give_up: Duration) {
        let mut state = self.lock();
        if let Some(open) = state.open.take() {
            let _ = open.release.send(true);
        }
        *state = GateState {
            instance: Some(instance),
            sizes: sizes.into_iter().filter(|&size| size > 0).collect(),
            give_up,
            ..GateState::default()
        };
    }

    /// True when requests of `instance` are held by the gate now (cheap check for the DNS server).
    pub(crate) fn holds(&self, instance: usize) -> bool {
        let state = self.lock();
        state.instance == Some(instance) && !state.sizes.is_empty()
    }

    /// True while some group is still to pass.
    pub(crate) fn armed(&self) -> bool {
        !self.lock().sizes.is_empty()
    }

    /// The groups passed so far (the open one last, unfilled).
    pub(crate) fn report(&self) -> Vec<GateGroup> {
        let state = self.lock();
        let mut groups = state.passed.clone();
        if let Some(open) = &state.open {
            groups.push(GateGroup { size: open.size, members: open.members.clone(), filled: false });
        }
        groups
    }

    /// Joins the current group (when the gate holds `instance`) and waits until it fills or gives up.
    pub(crate) async fn pass(&self, instance: usize, label: impl FnOnce() -> String) {
        let (id, mut released, give_up) = {
            let mut state = self.lock();
            if state.instance != Some(instance) {
                return;
            }
            let Some(&size) = state.sizes.front() else { return };
            if state.open.is_none() {
                let id = state.next_id;
                state.next_id += 1;
                let (release, _) = watch::channel(false);
                state.open = Some(OpenGroup { id, size, members: Vec::new(), release });
            }
            let open = state.open.as_mut().expect("opened above");
            open.members.push(label());
            if open.members.len() >= open.size {
                let open = state.open.take().expect("open");
                let _ = open.release.send(true);
                state.sizes.pop_front();
                state.passed.push(GateGroup { size: open.size, members: open.members, filled: true });
                return;
            }
            (open.id, open.release.subscribe(), state.give_up)
        };
        if tokio::time::timeout(give_up, released.wait_for(|&open| open)).await.is_ok() {
            return;
        }
        let mut state = self.lock();
        if state.open.as_ref().is_some_and(|open| open.id == id) {
            let open = state.open.take().expect("open");
            let _ = open.release.send(true);
            state.sizes.pop_front();
            state.passed.push(GateGroup { size: open.size, members: open.members, filled: false });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_group_opens_when_it_is_full() {
        let gate = Gate::default();
        gate.arm(0, vec![2, 1], GATE_GIVE_UP);
        // Another instance passes freely.
        gate.pass(1, || "GET /other".into()).await;
        let first = tokio::spawn({
            let gate = gate.clone();
            async move { gate.pass(0, || "GET /a".into()).await }
        });
        gate.pass(0, || "GET /b".into()).await;
        first.await.unwrap();
        gate.pass(0, || "GET /c".into()).await;
        assert!(!gate.holds(0));
        gate.pass(0, || "GET /d".into()).await;
        let report = gate.report();
        assert_eq!(report.len(), 2);
        assert!(report.iter().all(|group| group.filled));
        let mut first_members = report[0].members.clone();
        first_members.sort();
        assert_eq!(first_members, vec!["GET /a".to_owned(), "GET /b".to_owned()]);
        assert_eq!(report[1].members, vec!["GET /c".to_owned()]);
    }

    #[tokio::test]
    async fn a_lone_request_breaks_its_group_instead_of_hanging() {
        let gate = Gate::default();
        gate.arm(0, vec![2], Duration::from_millis(20));
        gate.pass(0, || "GET /a".into()).await;
        assert_eq!(gate.report(), vec![GateGroup { size: 2, members: vec!["GET /a".into()], filled: false }]);
        assert!(!gate.holds(0));
    }
}
