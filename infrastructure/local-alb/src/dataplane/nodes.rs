//! The load balancer's nodes: where a published routing table reaches the
//! traffic.
//!
//! Without faults there is one node and a publish swaps its table at once:
//! a request costs one `ArcSwap` load. With `--propagation MIN..MAX` and
//! `--nodes N`, each client connection is served by one of N nodes (round
//! robin), and each node applies each published table after a random delay
//! of its own, drawn uniformly from the range, as an ALB's nodes pick up an
//! accepted change over seconds. A node applies tables in the order they were
//! published and never goes back to an older one: a later change whose delay
//! is shorter waits for the earlier one. One thread applies the due tables of
//! every node.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use alb::metrics::{self as names, label};
use arc_swap::ArcSwap;

use super::table::RouteTables;

/// How accepted changes reach the traffic: `nodes` nodes, each applying a
/// change after its own delay, uniform within `min..=max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Propagation {
    pub min: Duration,
    pub max: Duration,
    pub nodes: usize,
}

struct Pending {
    due: Instant,
    generation: u64,
    tables: Arc<RouteTables>,
}

struct Shared {
    /// The table each node routes by.
    tables: Box<[ArcSwap<RouteTables>]>,
    /// The generation each node serves.
    generations: Box<[AtomicU64]>,
    /// Per node, the published tables it has not applied yet, oldest first.
    queues: Mutex<Vec<VecDeque<Pending>>>,
    wake: Condvar,
    stop: AtomicBool,
}

/// The nodes' routing tables.
pub(crate) struct Nodes {
    shared: Arc<Shared>,
    /// The newest published table (what Describe* already answers).
    latest: ArcSwap<RouteTables>,
    propagation: Option<Propagation>,
    published: AtomicU64,
    /// The node the next client connection goes to.
    next: AtomicUsize,
    applier: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Nodes {
    pub fn new(initial: RouteTables, propagation: Option<Propagation>) -> Nodes {
        let count = propagation.map_or(1, |p| p.nodes.max(1));
        let initial = Arc::new(initial);
        let shared = Arc::new(Shared {
            tables: (0..count)
                .map(|_| ArcSwap::new(Arc::clone(&initial)))
                .collect(),
            // Counted as `ficus_alb_rule_table_generation` counts: the table
            // it starts with is the first.
            generations: (0..count).map(|_| AtomicU64::new(1)).collect(),
            queues: Mutex::new((0..count).map(|_| VecDeque::new()).collect()),
            wake: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        Nodes {
            shared,
            latest: ArcSwap::new(initial),
            propagation,
            published: AtomicU64::new(1),
            next: AtomicUsize::new(0),
            applier: Mutex::new(None),
        }
    }

    /// The node a new client connection is served by (round robin).
    pub fn assign(&self) -> usize {
        if self.shared.tables.len() == 1 {
            return 0;
        }
        self.next.fetch_add(1, Ordering::Relaxed) % self.shared.tables.len()
    }

    /// The table `node` routes by now.
    #[inline]
    pub fn load_full(&self, node: usize) -> Arc<RouteTables> {
        self.shared.tables[node].load_full()
    }

    /// The newest published table, whether or not the nodes have it yet.
    pub fn latest(&self) -> arc_swap::Guard<Arc<RouteTables>> {
        self.latest.load()
    }

    /// Publishes `tables`: at once on every node, or (with propagation) on
    /// each node after its own delay.
    pub fn publish(&self, tables: RouteTables) {
        let tables = Arc::new(tables);
        self.latest.store(Arc::clone(&tables));
        let generation = self.published.fetch_add(1, Ordering::Relaxed) + 1;
        let Some(propagation) = self.propagation else {
            for (node, slot) in self.shared.tables.iter().enumerate() {
                slot.store(Arc::clone(&tables));
                self.shared.generations[node].store(generation, Ordering::Relaxed);
            }
            return;
        };
        let now = Instant::now();
        {
            let mut queues = self.shared.queues.lock().unwrap_or_else(|e| e.into_inner());
            for queue in queues.iter_mut() {
                let delay = random_delay(propagation.min, propagation.max);
                // In order: never before the change published earlier.
                let due = queue
                    .back()
                    .map_or(now + delay, |last| (now + delay).max(last.due));
                queue.push_back(Pending {
                    due,
                    generation,
                    tables: Arc::clone(&tables),
                });
            }
        }
        self.start_applier();
        self.shared.wake.notify_all();
    }

    fn start_applier(&self) {
        let mut applier = self.applier.lock().unwrap_or_else(|e| e.into_inner());
        if applier.is_some() {
            return;
        }
        let shared = Arc::clone(&self.shared);
        match std::thread::Builder::new()
            .name("alb-propagation".to_owned())
            .spawn(move || apply_when_due(&shared))
        {
            Ok(handle) => *applier = Some(handle),
            Err(error) => {
                // Without the thread, apply everything now rather than never.
                tracing::error!(%error, "cannot start the propagation thread; changes apply at once");
                apply_all(&self.shared);
            }
        }
    }

    /// Per node, the changes not applied yet and the generation served, as
    /// Prometheus text (nothing without propagation).
    pub fn render(&self, out: &mut String) {
        if self.propagation.is_none() {
            return;
        }
        let pending: Vec<usize> = self
            .shared
            .queues
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(VecDeque::len)
            .collect();
        let _ = writeln!(
            out,
            "# HELP {0} Accepted changes a data-plane node has not applied yet.\n# TYPE {0} gauge",
            names::PROPAGATION_PENDING_CHANGES
        );
        for (node, count) in pending.iter().enumerate() {
            let _ = writeln!(
                out,
                "{}{{{}=\"{node}\"}} {count}",
                names::PROPAGATION_PENDING_CHANGES,
                label::NODE
            );
        }
        let _ = writeln!(
            out,
            "# HELP {0} The routing table generation a data-plane node serves, as ficus_alb_rule_table_generation counts them (1: the one it started with); every node has a change once it reaches that counter.\n# TYPE {0} gauge",
            names::PROPAGATION_NODE_GENERATION
        );
        for (node, generation) in self.shared.generations.iter().enumerate() {
            let _ = writeln!(
                out,
                "{}{{{}=\"{node}\"}} {}",
                names::PROPAGATION_NODE_GENERATION,
                label::NODE,
                generation.load(Ordering::Relaxed)
            );
        }
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.wake.notify_all();
    }
}

/// A delay drawn uniformly from `min..=max`.
fn random_delay(min: Duration, max: Duration) -> Duration {
    if max <= min {
        return min;
    }
    min + (max - min).mul_f64(rand::random::<f64>())
}

/// The propagation thread: applies each node's due tables in order, sleeps
/// until the next is due or a publish wakes it; ends when the nodes are
/// dropped.
fn apply_when_due(shared: &Shared) {
    let mut queues = shared.queues.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        if shared.stop.load(Ordering::Relaxed) {
            return;
        }
        let now = Instant::now();
        let mut next_due: Option<Instant> = None;
        for (node, queue) in queues.iter_mut().enumerate() {
            while queue.front().is_some_and(|p| p.due <= now) {
                let pending = queue.pop_front().expect("checked above");
                shared.tables[node].store(pending.tables);
                shared.generations[node].store(pending.generation, Ordering::Relaxed);
            }
            if let Some(front) = queue.front() {
                next_due = Some(next_due.map_or(front.due, |d| d.min(front.due)));
            }
        }
        queues = match next_due {
            Some(due) => {
                shared
                    .wake
                    .wait_timeout(queues, due.saturating_duration_since(now))
                    .unwrap_or_else(|e| e.into_inner())
                    .0
            }
            None => shared.wake.wait(queues).unwrap_or_else(|e| e.into_inner()),
        };
    }
}

fn apply_all(shared: &Shared) {
    let mut queues = shared.queues.lock().unwrap_or_else(|e| e.into_inner());
    for (node, queue) in queues.iter_mut().enumerate() {
        while let Some(pending) = queue.pop_front() {
            shared.tables[node].store(pending.tables);
            shared.generations[node].store(pending.generation, Ordering::Relaxed);
        }
    }
}
