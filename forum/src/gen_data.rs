//! Generates db.json-shaped data of any size, for benchmarks and large-data tests.
//! Deterministic for a given seed. Fan-out is skewed like a real forum: a few
//! threads and users carry most posts, many threads have few or none.

use std::io::{self, Write};

use serde_json::json;

use crate::js_json;

/// How much data to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Volume {
    pub users: u64,
    pub threads: u64,
    pub posts: u64,
    pub seed: u64,
}

const WORDS: &[&str] = &[
    "lich",
    "candy",
    "kingdom",
    "guitar",
    "vampire",
    "adventure",
    "party",
    "tomorrow",
    "dungeon",
    "sword",
    "tree",
    "fort",
    "princess",
    "ooo",
    "music",
    "science",
    "dog",
    "human",
    "hero",
    "song",
];

/// Writes the data as JSON, one record per line. Posts point at existing threads
/// and users only (when there are any; with no threads or users they point at id 1).
pub fn write_dataset(out: &mut impl Write, volume: Volume) -> io::Result<()> {
    let mut random = SplitMix64(volume.seed);
    let mut line = Vec::with_capacity(256);
    let mut write_array =
        |out: &mut dyn Write,
         name: &str,
         count: u64,
         last: bool,
         make: &mut dyn FnMut(u64) -> serde_json::Value| {
            write!(out, "\"{name}\":[")?;
            for index in 0..count {
                line.clear();
                line.extend_from_slice(if index == 0 { b"\n" } else { b",\n" });
                js_json::write_value(&mut line, &make(index));
                out.write_all(&line)?;
            }
            out.write_all(if last { b"\n]" } else { b"\n],\n" })
        };
    out.write_all(b"{")?;
    write_array(out, "users", volume.users, false, &mut |index| {
        let id = index + 1;
        json!({
            "id": id,
            "username": format!("user{id}"),
            "name": format!("User {id}"),
            "bio": random.sentence(4, 12),
        })
    })?;
    write_array(out, "threads", volume.threads, false, &mut |index| {
        json!({
            "id": index + 1,
            "title": random.sentence(3, 8),
            "createdBy": random.below(volume.users) + 1,
        })
    })?;
    write_array(out, "posts", volume.posts, true, &mut |_| {
        json!({
            "thread": random.skewed_below(volume.threads) + 1,
            "text": random.sentence(3, 20),
            "user": random.skewed_below(volume.users) + 1,
        })
    })?;
    out.write_all(b"}\n")
}

/// Sebastiano Vigna's SplitMix64: small, fast, good enough for test data.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when n is 0).
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }

    /// In `0..n`, low values far more likely (density falls like 1/sqrt).
    fn skewed_below(&mut self, n: u64) -> u64 {
        let unit = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        ((unit * unit) * n as f64) as u64
    }

    fn sentence(&mut self, min_words: u64, max_words: u64) -> String {
        let words = min_words + self.below(max_words - min_words + 1);
        let mut sentence = String::new();
        for index in 0..words {
            if index > 0 {
                sentence.push(' ');
            }
            sentence.push_str(WORDS[self.below(WORDS.len() as u64) as usize]);
        }
        sentence
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Dataset;

    #[test]
    fn generated_data_loads_with_every_reference_resolved() {
        let volume = Volume {
            users: 50,
            threads: 20,
            posts: 1000,
            seed: 7,
        };
        let mut text = Vec::new();
        write_dataset(&mut text, volume).unwrap();
        let data = Dataset::from_json(std::str::from_utf8(&text).unwrap(), "generated").unwrap();
        assert_eq!(
            (data.user_count(), data.thread_count(), data.post_count()),
            (50, 20, 1000)
        );
        assert!(data.dangling_references().is_empty());
        let mut again = Vec::new();
        write_dataset(&mut again, volume).unwrap();
        assert_eq!(text, again, "same seed, same data");
    }

    #[test]
    fn empty_volume_is_valid_data() {
        let mut text = Vec::new();
        write_dataset(
            &mut text,
            Volume {
                users: 0,
                threads: 0,
                posts: 0,
                seed: 1,
            },
        )
        .unwrap();
        let data = Dataset::from_json(std::str::from_utf8(&text).unwrap(), "generated").unwrap();
        assert_eq!(data.post_count(), 0);
    }
}
