//! Per-second counters of the data plane, kept for the CloudWatch API.
//!
//! One [`Cell`] per (target group, load balancer) pair that the data plane
//! routed to, and one per load balancer for what no target group answered
//! (the load balancer's own errors). The hot path only adds to atomics of
//! its worker's shard: no lock, no allocation, no shared cache line between
//! workers. Each shard holds a ring of [`RING`] one-second slots; a request
//! adds to the slot of the current wall-clock second. Once a second is
//! [`GRACE_SECONDS`] old, [`Registry::harvest`] (a task, every 250 ms) moves
//! it, summed over the shards, into the cell's history and clears the slot
//! for the second it will hold next.
//!
//! Memory bound, per cell: the live slots take `RING × shards × 1.8 KiB`
//! (29 KiB with two workers). The history keeps, for the retention (3 hours
//! by default), only seconds that had traffic: about 220 B plus 16 B per
//! distinct latency bin of that second (at most 416), so 0.5–1 KiB for
//! typical traffic (20–40 bins), 5–11 MiB per target group for three hours
//! of steady traffic, and at most 6.9 KiB per second, 73 MiB per target
//! group, in the pathological case of every second's latencies spread over
//! all bins; plus 16 B per second of health samples (170 KiB for three
//! hours). Cells are created per (target group, load balancer) routed to,
//! never per request or client; the retention bounds everything else.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::histogram::{self, BINS};

/// One-second slots per shard.
pub const RING: u64 = 8;
/// A second is harvested once it is this many seconds old (writers that
/// read the clock just before the second ended have finished by then).
pub const GRACE_SECONDS: u64 = 2;
/// Default retention of per-second data: 3 hours, as CloudWatch keeps
/// high-resolution data.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(3 * 3600);

/// What a second counts, by index into [`Second::counts`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    /// Requests for which a target was chosen (`RequestCount`).
    Requests = 0,
    Target2xx = 1,
    Target3xx = 2,
    Target4xx = 3,
    Target5xx = 4,
    Elb4xx = 5,
    Elb5xx = 6,
    Elb502 = 7,
    Elb503 = 8,
    Elb504 = 9,
}

const COUNTS: usize = 10;

/// The current wall-clock second since the Unix epoch.
pub fn now_second() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

struct Slot {
    /// The second this slot holds (written by the harvester only).
    second: AtomicU64,
    counts: [AtomicU64; COUNTS],
    /// Target response times, in microseconds.
    rt_sum: AtomicU64,
    rt_count: AtomicU64,
    rt_min: AtomicU64,
    rt_max: AtomicU64,
    bins: Box<[AtomicU32]>,
}

impl Slot {
    fn new(second: u64) -> Slot {
        Slot {
            second: AtomicU64::new(second),
            counts: Default::default(),
            rt_sum: AtomicU64::new(0),
            rt_count: AtomicU64::new(0),
            rt_min: AtomicU64::new(u64::MAX),
            rt_max: AtomicU64::new(0),
            bins: (0..BINS).map(|_| AtomicU32::new(0)).collect(),
        }
    }

    /// Adds this slot's counts to `into`; with `clear`, also resets them.
    fn drain_into(&self, into: &mut Second, clear: bool) {
        let take = |value: &AtomicU64, reset: u64| {
            if clear {
                value.swap(reset, Ordering::Relaxed)
            } else {
                value.load(Ordering::Relaxed)
            }
        };
        for (sum, count) in into.counts.iter_mut().zip(&self.counts) {
            *sum += take(count, 0);
        }
        let rt_count = take(&self.rt_count, 0);
        let rt_sum = take(&self.rt_sum, 0);
        let rt_min = take(&self.rt_min, u64::MAX);
        let rt_max = take(&self.rt_max, 0);
        if rt_count == 0 {
            return;
        }
        let rt = into.response_times.get_or_insert_with(ResponseTimes::empty);
        rt.sum_micros += rt_sum;
        rt.count += rt_count;
        rt.min_micros = rt.min_micros.min(rt_min);
        rt.max_micros = rt.max_micros.max(rt_max);
        for (index, bin) in self.bins.iter().enumerate() {
            let n = if clear {
                bin.swap(0, Ordering::Relaxed)
            } else {
                bin.load(Ordering::Relaxed)
            };
            if n > 0 {
                rt.add_bin(index as u16, u64::from(n));
            }
        }
    }
}

/// Target response times of one second or period.
#[derive(Debug, Clone, PartialEq)]
pub struct ResponseTimes {
    pub sum_micros: u64,
    pub count: u64,
    pub min_micros: u64,
    pub max_micros: u64,
    /// Non-empty histogram bins (index, samples), by index.
    pub bins: Vec<(u16, u64)>,
}

impl ResponseTimes {
    fn empty() -> ResponseTimes {
        ResponseTimes {
            sum_micros: 0,
            count: 0,
            min_micros: u64::MAX,
            max_micros: 0,
            bins: Vec::new(),
        }
    }

    fn add_bin(&mut self, index: u16, samples: u64) {
        match self.bins.binary_search_by_key(&index, |(i, _)| *i) {
            Ok(at) => self.bins[at].1 += samples,
            Err(at) => self.bins.insert(at, (index, samples)),
        }
    }

    /// Adds `other` (another second of the same period).
    pub fn merge(&mut self, other: &ResponseTimes) {
        self.sum_micros += other.sum_micros;
        self.count += other.count;
        self.min_micros = self.min_micros.min(other.min_micros);
        self.max_micros = self.max_micros.max(other.max_micros);
        for &(index, samples) in &other.bins {
            self.add_bin(index, samples);
        }
    }

    /// Percentile `p` (0 to 100), in microseconds.
    pub fn percentile(&self, p: f64) -> Option<f64> {
        let mut dense = vec![0u64; BINS];
        for &(index, samples) in &self.bins {
            dense[usize::from(index)] = samples;
        }
        histogram::percentile(&dense, p, self.min_micros, self.max_micros)
    }
}

/// Samples of a gauge (healthy or unhealthy targets), one per second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gauge {
    pub sum: u64,
    pub samples: u64,
    pub min: u64,
    pub max: u64,
}

impl Gauge {
    fn one(value: u64) -> Gauge {
        Gauge {
            sum: value,
            samples: 1,
            min: value,
            max: value,
        }
    }

    fn merge(&mut self, other: &Gauge) {
        self.sum += other.sum;
        self.samples += other.samples;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }
}

/// What one cell counted in one second (or, summed, in a period).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Second {
    pub counts: [u64; COUNTS],
    pub response_times: Option<ResponseTimes>,
    /// Healthy and unhealthy targets of a target group, sampled each second.
    pub health: Option<(Gauge, Gauge)>,
}

impl Second {
    pub fn count(&self, what: Count) -> u64 {
        self.counts[what as usize]
    }

    fn is_empty(&self) -> bool {
        self.response_times.is_none() && self.counts.iter().all(|c| *c == 0)
    }

    /// Adds `other` to this.
    pub fn merge(&mut self, other: &Second) {
        for (sum, count) in self.counts.iter_mut().zip(&other.counts) {
            *sum += count;
        }
        if let Some(theirs) = &other.response_times {
            self.response_times
                .get_or_insert_with(ResponseTimes::empty)
                .merge(theirs);
        }
        match (&mut self.health, &other.health) {
            (Some((healthy, unhealthy)), Some((h, u))) => {
                healthy.merge(h);
                unhealthy.merge(u);
            }
            (mine @ None, Some(theirs)) => *mine = Some(*theirs),
            _ => {}
        }
    }
}

struct History {
    /// Seconds with traffic, oldest first.
    seconds: VecDeque<(u64, Second)>,
    /// Every second up to this one is in `seconds` (or had no traffic).
    harvested_through: u64,
    /// (second, healthy targets, unhealthy targets), oldest first.
    health: VecDeque<(u64, u32, u32)>,
}

/// The counters of one target group behind one load balancer, or of a load
/// balancer itself (`target_group` = `None`).
pub struct Cell {
    /// The `LoadBalancer` dimension: `app/<name>/<id>`.
    pub load_balancer: String,
    /// The `TargetGroup` dimension: `targetgroup/<name>/<id>`.
    pub target_group: Option<String>,
    shards: Box<[Box<[Slot]>]>,
    history: Mutex<History>,
}

impl Cell {
    fn new(load_balancer: String, target_group: Option<String>, shards: usize, now: u64) -> Cell {
        let ring = || -> Box<[Slot]> {
            (0..RING)
                .map(|i| {
                    // The second in [now, now + RING) that maps to slot i.
                    let second = now + (i + RING - now % RING) % RING;
                    Slot::new(second)
                })
                .collect()
        };
        Cell {
            load_balancer,
            target_group,
            shards: (0..shards.max(1)).map(|_| ring()).collect(),
            history: Mutex::new(History {
                seconds: VecDeque::new(),
                harvested_through: now.saturating_sub(1),
                health: VecDeque::new(),
            }),
        }
    }

    fn slot(&self, worker: usize) -> &Slot {
        let shard = &self.shards[worker % self.shards.len()];
        &shard[(now_second() % RING) as usize]
    }

    /// Counts a response from a target: `RequestCount`, its
    /// `HTTPCode_Target_nXX_Count` and its `TargetResponseTime`.
    pub fn record_target(&self, worker: usize, status: u16, response_time: Duration) {
        let slot = self.slot(worker);
        slot.counts[Count::Requests as usize].fetch_add(1, Ordering::Relaxed);
        let class = match status / 100 {
            2 => Some(Count::Target2xx),
            3 => Some(Count::Target3xx),
            4 => Some(Count::Target4xx),
            5 => Some(Count::Target5xx),
            _ => None,
        };
        if let Some(class) = class {
            slot.counts[class as usize].fetch_add(1, Ordering::Relaxed);
        }
        let micros = u64::try_from(response_time.as_micros()).unwrap_or(u64::MAX);
        slot.rt_sum.fetch_add(micros, Ordering::Relaxed);
        slot.rt_count.fetch_add(1, Ordering::Relaxed);
        slot.rt_min.fetch_min(micros, Ordering::Relaxed);
        slot.rt_max.fetch_max(micros, Ordering::Relaxed);
        slot.bins[histogram::index(micros)].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an error the load balancer answered itself with `status`;
    /// `target_chosen`: a target had been picked (it then counts in
    /// `RequestCount` too, as on AWS).
    pub fn record_elb(&self, worker: usize, status: u16, target_chosen: bool) {
        let slot = self.slot(worker);
        let add = |what: Count| slot.counts[what as usize].fetch_add(1, Ordering::Relaxed);
        if target_chosen {
            add(Count::Requests);
        }
        match status {
            400..=499 => {
                add(Count::Elb4xx);
            }
            500..=599 => {
                add(Count::Elb5xx);
                match status {
                    502 => add(Count::Elb502),
                    503 => add(Count::Elb503),
                    504 => add(Count::Elb504),
                    _ => 0,
                };
            }
            _ => {}
        }
    }

    /// Samples the target group's healthy and unhealthy target counts for
    /// `second` (`HealthyHostCount`, `UnHealthyHostCount`); a second sample
    /// of the same second replaces the first.
    pub fn record_health(&self, second: u64, healthy: u32, unhealthy: u32) {
        let mut history = self.lock();
        if history.health.back().is_some_and(|(s, _, _)| *s == second) {
            history.health.pop_back();
        }
        history.health.push_back((second, healthy, unhealthy));
    }

    fn lock(&self) -> MutexGuard<'_, History> {
        self.history.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves every second at least [`GRACE_SECONDS`] old out of the live
    /// slots into the history; drops history older than `retention`.
    fn harvest(&self, now: u64, retention: u64) {
        let mut history = self.lock();
        let mut ready: Vec<usize> = (0..RING as usize)
            .filter(|&i| self.shards[0][i].second.load(Ordering::Relaxed) + GRACE_SECONDS <= now)
            .collect();
        ready.sort_by_key(|&i| self.shards[0][i].second.load(Ordering::Relaxed));
        for i in ready {
            let second = self.shards[0][i].second.load(Ordering::Relaxed);
            let mut total = Second::default();
            // The next second this slot holds that is not ready already
            // (further on when the harvest ran late).
            let mut next = second + RING;
            while next + GRACE_SECONDS <= now {
                next += RING;
            }
            for shard in self.shards.iter() {
                shard[i].drain_into(&mut total, true);
                shard[i].second.store(next, Ordering::Relaxed);
            }
            if !total.is_empty() && retention > 0 {
                history.seconds.push_back((second, total));
            }
            history.harvested_through = history.harvested_through.max(second);
        }
        let oldest = now.saturating_sub(retention);
        while history.seconds.front().is_some_and(|(s, _)| *s < oldest) {
            history.seconds.pop_front();
        }
        while history.health.front().is_some_and(|(s, _, _)| *s < oldest) {
            history.health.pop_front();
        }
    }

    /// The seconds in `from..to` that had traffic, oldest first, including
    /// those not harvested yet.
    pub fn seconds(&self, from: u64, to: u64) -> Vec<(u64, Second)> {
        let history = self.lock();
        let start = history.seconds.partition_point(|(s, _)| *s < from);
        let mut found: Vec<(u64, Second)> = history
            .seconds
            .range(start..)
            .take_while(|(s, _)| *s < to)
            .cloned()
            .collect();
        let mut live: Vec<(u64, Second)> = (0..RING as usize)
            .filter_map(|i| {
                let second = self.shards[0][i].second.load(Ordering::Relaxed);
                if second <= history.harvested_through || second < from || second >= to {
                    return None;
                }
                let mut total = Second::default();
                for shard in self.shards.iter() {
                    shard[i].drain_into(&mut total, false);
                }
                (!total.is_empty()).then_some((second, total))
            })
            .collect();
        live.sort_by_key(|(s, _)| *s);
        found.extend(live);
        let start = history.health.partition_point(|(s, _, _)| *s < from);
        let health: Vec<(u64, u32, u32)> = history
            .health
            .range(start..)
            .take_while(|(s, _, _)| *s < to)
            .copied()
            .collect();
        if health.is_empty() {
            return found;
        }
        let mut by_second: BTreeMap<u64, Second> = found.into_iter().collect();
        for (second, healthy, unhealthy) in health {
            by_second.entry(second).or_default().health = Some((
                Gauge::one(u64::from(healthy)),
                Gauge::one(u64::from(unhealthy)),
            ));
        }
        by_second.into_iter().collect()
    }
}

/// A cell's dimensions: (`LoadBalancer`, `TargetGroup`).
type CellKey = (String, Option<String>);

/// Every cell, and whether counting is on.
pub struct Registry {
    /// Seconds of history kept; 0 turns counting off.
    retention: u64,
    shards: usize,
    cells: Mutex<HashMap<CellKey, Arc<Cell>>>,
}

impl Registry {
    /// `retention` zero: counting is off ([`Registry::cell`] gives `None`).
    pub fn new(retention: Duration, shards: usize) -> Registry {
        Registry {
            retention: retention.as_secs(),
            shards,
            cells: Mutex::new(HashMap::new()),
        }
    }

    pub fn enabled(&self) -> bool {
        self.retention > 0
    }

    /// The cell of a target group (by ARN) behind a load balancer (by ARN),
    /// or with `target_group_arn` `None` of the load balancer itself;
    /// created on first use. `None` when counting is off.
    pub fn cell(
        &self,
        load_balancer_arn: &str,
        target_group_arn: Option<&str>,
    ) -> Option<Arc<Cell>> {
        if !self.enabled() {
            return None;
        }
        let load_balancer = load_balancer_dimension(load_balancer_arn);
        let target_group = target_group_arn.map(target_group_dimension);
        let mut cells = self.cells.lock().unwrap_or_else(|e| e.into_inner());
        let cell = cells
            .entry((load_balancer.clone(), target_group.clone()))
            .or_insert_with(|| {
                Arc::new(Cell::new(
                    load_balancer,
                    target_group,
                    self.shards,
                    now_second(),
                ))
            });
        Some(Arc::clone(cell))
    }

    /// Every cell.
    pub fn cells(&self) -> Vec<Arc<Cell>> {
        let cells = self.cells.lock().unwrap_or_else(|e| e.into_inner());
        cells.values().cloned().collect()
    }

    /// Moves finished seconds into the cells' histories (see the module
    /// documentation).
    pub fn harvest(&self, now: u64) {
        for cell in self.cells() {
            cell.harvest(now, self.retention);
        }
    }

    /// Harvests every 250 ms, and calls `sample_health` with the current
    /// second, until the registry is dropped.
    pub fn spawn_harvester(registry: &Arc<Registry>, sample_health: impl Fn(u64) + Send + 'static) {
        if !registry.enabled() {
            return;
        }
        let registry = Arc::downgrade(registry);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(registry) = registry.upgrade() else {
                    break;
                };
                let now = now_second();
                sample_health(now);
                registry.harvest(now);
            }
        });
    }
}

/// `app/<name>/<id>`: the part of a load balancer ARN after `loadbalancer/`.
pub fn load_balancer_dimension(arn: &str) -> String {
    arn.split_once(":loadbalancer/")
        .map_or(arn, |(_, suffix)| suffix)
        .to_owned()
}

/// `targetgroup/<name>/<id>`: the resource part of a target group ARN.
pub fn target_group_dimension(arn: &str) -> String {
    arn.rsplit_once(':')
        .map_or(arn, |(_, suffix)| suffix)
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LB: &str =
        "arn:aws:elasticloadbalancing:us-east-1:000000000000:loadbalancer/app/web/0123456789abcdef";
    const TG: &str =
        "arn:aws:elasticloadbalancing:us-east-1:000000000000:targetgroup/users/89abcdef01234567";

    #[test]
    fn dimensions_are_the_arn_suffixes_aws_publishes() {
        assert_eq!(load_balancer_dimension(LB), "app/web/0123456789abcdef");
        assert_eq!(
            target_group_dimension(TG),
            "targetgroup/users/89abcdef01234567"
        );
    }

    #[test]
    fn counts_are_readable_at_once_and_after_the_harvest() {
        let registry = Registry::new(DEFAULT_RETENTION, 2);
        let cell = registry.cell(LB, Some(TG)).unwrap();
        let now = now_second();
        cell.record_target(0, 200, Duration::from_millis(5));
        cell.record_target(1, 503, Duration::from_millis(50));
        cell.record_elb(1, 502, true);
        let read = |cell: &Cell| {
            let mut total = Second::default();
            for (_, second) in cell.seconds(now - 10, now + 10) {
                total.merge(&second);
            }
            total
        };
        let before = read(&cell);
        assert_eq!(before.count(Count::Requests), 3);
        assert_eq!(before.count(Count::Target5xx), 1);
        assert_eq!(before.count(Count::Elb502), 1);
        let rt = before.response_times.clone().unwrap();
        assert_eq!((rt.count, rt.min_micros, rt.max_micros), (2, 5000, 50000));
        registry.harvest(now + GRACE_SECONDS + 1);
        assert_eq!(read(&cell), before, "harvesting neither loses nor doubles");
        registry.harvest(now + 4 * 3600);
        assert_eq!(read(&cell), Second::default(), "older than the retention");
    }

    #[test]
    fn counting_off_gives_no_cells() {
        let registry = Registry::new(Duration::ZERO, 2);
        assert!(registry.cell(LB, Some(TG)).is_none());
    }
}
