//! The bounded latency histogram behind `TargetResponseTime` percentiles.
//!
//! Microseconds in log-linear bins (as HdrHistogram does): below 16 µs one
//! bin per microsecond (exact); from 16 µs on, 16 bins per power of two, so a
//! bin is at most 1/16 of its lower bound wide. A percentile is answered with
//! its bin's midpoint, clamped to the exact minimum and maximum of the
//! period: **within 3.2 % of the true value (or 1 µs)**. Values above 2^29 µs
//! (about 9 minutes, far past any target timeout) share the last bin.
//! [`BINS`] is 416.

/// Sub-bins per power of two, as a power of two.
const SUB_BITS: u32 = 4;
const SUB: usize = 1 << SUB_BITS;
/// The largest power of two with bins of its own.
const MAX_EXPONENT: u32 = 28;
/// Number of bins.
pub const BINS: usize = SUB + (MAX_EXPONENT - SUB_BITS + 1) as usize * SUB;

/// The bin of `micros`.
pub fn index(micros: u64) -> usize {
    if micros < SUB as u64 {
        return micros as usize;
    }
    let exponent = 63 - micros.leading_zeros();
    if exponent > MAX_EXPONENT {
        return BINS - 1;
    }
    let shift = exponent - SUB_BITS;
    let sub = ((micros >> shift) as usize) & (SUB - 1);
    SUB + (shift as usize) * SUB + sub
}

/// The smallest and largest value of bin `index`.
pub fn bounds(index: usize) -> (u64, u64) {
    if index < SUB {
        return (index as u64, index as u64);
    }
    let shift = ((index - SUB) / SUB) as u32;
    let sub = ((index - SUB) % SUB) as u64;
    let low = (SUB as u64 + sub) << shift;
    (low, low + (1u64 << shift) - 1)
}

/// The value of percentile `p` (0 to 100) of the samples counted in `bins`
/// (dense, [`BINS`] long) whose exact minimum and maximum are `min`/`max`.
/// `None` when there are no samples.
pub fn percentile(bins: &[u64], p: f64, min: u64, max: u64) -> Option<f64> {
    let count: u64 = bins.iter().sum();
    if count == 0 {
        return None;
    }
    if p <= 0.0 {
        return Some(min as f64);
    }
    if p >= 100.0 {
        return Some(max as f64);
    }
    // Nearest rank: the smallest value with at least p% of samples at or below.
    let rank = ((p / 100.0) * count as f64).ceil().max(1.0) as u64;
    let mut seen = 0u64;
    for (index, in_bin) in bins.iter().enumerate() {
        seen += in_bin;
        if seen >= rank {
            let (low, high) = bounds(index);
            let middle = (low as f64 + high as f64) / 2.0;
            return Some(middle.clamp(min as f64, max as f64));
        }
    }
    Some(max as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_falls_in_a_bin_that_contains_it() {
        let mut values: Vec<u64> = (0..5000).collect();
        values.extend((0..40).map(|shift| 1u64 << shift.min(28)));
        values.extend([999_999, 1_000_000, 60_000_000, (1 << 29) - 1]);
        for value in values {
            let (low, high) = bounds(index(value));
            assert!(low <= value && value <= high, "{value} in {low}..={high}");
        }
        assert_eq!(index(u64::MAX), BINS - 1);
        assert_eq!(BINS, 416);
    }

    #[test]
    fn bins_are_ordered_and_contiguous() {
        for i in 1..BINS {
            assert_eq!(bounds(i).0, bounds(i - 1).1 + 1, "bin {i}");
        }
    }

    #[test]
    fn a_percentile_is_within_the_stated_error() {
        // 1000 samples spread from 1 ms to 1 s.
        let samples: Vec<u64> = (1..=1000).map(|i| i * 1000).collect();
        let mut bins = vec![0u64; BINS];
        samples.iter().for_each(|&s| bins[index(s)] += 1);
        for p in [1.0, 50.0, 90.0, 99.0, 99.9] {
            let exact = samples[((p / 100.0) * 1000.0_f64).ceil() as usize - 1] as f64;
            let answered = percentile(&bins, p, 1000, 1_000_000).unwrap();
            let error = (answered - exact).abs() / exact;
            assert!(error <= 0.032, "p{p}: {answered} vs {exact} ({error})");
        }
        assert_eq!(percentile(&bins, 100.0, 1000, 1_000_000), Some(1_000_000.0));
        assert_eq!(percentile(&bins, 0.0, 1000, 1_000_000), Some(1000.0));
        assert_eq!(percentile(&vec![0; BINS], 50.0, 0, 0), None);
    }
}
