//! What the demo recorded over time: each route's service share between two
//! metric scrapes, and a marker for each walkthrough step.

use std::time::Instant;

/// A point of the chart: seconds since the traffic started, and each route's
/// share of requests its service answered (0 to 1), in [`Timeline::routes`] order.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub at: f64,
    pub shares: Vec<f64>,
}

/// Whether a marker is a step forward or the rollback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkerKind {
    Step,
    Rollback,
}

/// A walkthrough step, e.g. `shift users`, at seconds since the start.
#[derive(Debug, Clone, PartialEq)]
pub struct Marker {
    pub at: f64,
    pub label: String,
    pub kind: MarkerKind,
}

/// A route's forward weight on its service, as read from the listener's
/// rules, from seconds since the start: what `migrate` set, where
/// [`Sample::shares`] is what the load balancer then did.
#[derive(Debug, Clone, PartialEq)]
pub struct Weight {
    pub at: f64,
    /// The route's index in [`Timeline::routes`].
    pub route: usize,
    pub percent: u8,
}

#[derive(Debug, Clone)]
pub struct Timeline {
    pub routes: Vec<String>,
    pub samples: Vec<Sample>,
    pub markers: Vec<Marker>,
    pub weights: Vec<Weight>,
    started: Instant,
}

impl Timeline {
    pub fn new(routes: Vec<String>) -> Timeline {
        Timeline {
            routes,
            samples: Vec::new(),
            markers: Vec::new(),
            weights: Vec::new(),
            started: Instant::now(),
        }
    }

    /// Seconds since the timeline started.
    pub fn now(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    pub fn sample(&mut self, shares: Vec<f64>) {
        let at = self.now();
        self.samples.push(Sample { at, shares });
    }

    pub fn mark(&mut self, label: &str, kind: MarkerKind) {
        let at = self.now();
        self.markers.push(Marker {
            at,
            label: label.to_owned(),
            kind,
        });
    }

    pub fn weight(&mut self, route: usize, percent: u8) {
        let at = self.now();
        self.weights.push(Weight { at, route, percent });
    }

    /// The latest share of each route (0 before the first sample).
    pub fn latest(&self) -> Vec<f64> {
        self.samples
            .last()
            .map_or_else(|| vec![0.0; self.routes.len()], |s| s.shares.clone())
    }

    /// The current step's label.
    pub fn step(&self) -> &str {
        self.markers.last().map_or("starting", |m| m.label.as_str())
    }
}
