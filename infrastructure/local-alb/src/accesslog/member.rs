//! A worker's gzip members: the text one worker renders, deflated on the
//! worker's own thread into complete gzip members (RFC 1952), which the
//! writer concatenates into the interval's file (gzip readers read
//! concatenated members as one stream). Only the compressed bytes, about a
//! tenth of the text at level 1, cross to the writer's core.

use flate2::{Compress, Compression, FlushCompress, Status};

/// The deflate window: 32 KiB, gzip's largest (log lines repeat the
/// previous lines' text, so a smaller one compresses worse).
const WINDOW_BITS: u8 = 15;

pub(super) struct Members {
    level: u32,
    /// Created on the first line (a worker that never logs allocates none).
    deflate: Option<Compress>,
    /// Whether a member is open: input went in since its header, and its
    /// trailer is not written yet.
    open: bool,
    /// Whether `deflate` ended a member and must be reset before the next.
    ended: bool,
    /// Complete members, then the open member's bytes so far.
    out: Vec<u8>,
    /// Where the open member starts in `out` (dropped there if deflate fails).
    member_start: usize,
}

impl Members {
    pub fn new(level: u32) -> Members {
        Members {
            level: level.min(9),
            deflate: None,
            open: false,
            ended: false,
            out: Vec::new(),
            member_start: 0,
        }
    }

    /// Deflates `text` into the open member, opening one if none is.
    pub fn deflate(&mut self, text: &[u8]) {
        if !text.is_empty() {
            self.run(text, FlushCompress::None);
        }
    }

    /// Ends the open member after deflating `text`, the rest of its input
    /// (nothing happens when there is neither an open member nor text).
    pub fn finish(&mut self, text: &[u8]) {
        if self.open || !text.is_empty() {
            self.run(text, FlushCompress::Finish);
            self.open = false;
            self.ended = true;
        }
    }

    /// Whether `take` would return complete members (call `finish` first).
    pub fn is_empty(&self) -> bool {
        self.out.is_empty()
    }

    /// The complete members' bytes, leaving `empty` (a cleared buffer) to
    /// write the next into. Call after [`Members::finish`].
    pub fn take(&mut self, empty: Vec<u8>) -> Vec<u8> {
        self.member_start = 0;
        std::mem::replace(&mut self.out, empty)
    }

    fn run(&mut self, mut input: &[u8], flush: FlushCompress) {
        let level = self.level;
        let deflate = self
            .deflate
            .get_or_insert_with(|| Compress::new_gzip(Compression::new(level), WINDOW_BITS));
        if !self.open {
            if std::mem::take(&mut self.ended) {
                deflate.reset();
            }
            self.open = true;
            self.member_start = self.out.len();
        }
        loop {
            // Room for the input stored, as level 0 writes it, and a block's
            // overhead: reserving is a no-op once a reused buffer is big enough.
            self.out.reserve(input.len() + 1024);
            let before = deflate.total_in();
            let status = deflate.compress_vec(input, &mut self.out, flush);
            let consumed = usize::try_from(deflate.total_in() - before).unwrap_or(input.len());
            input = input.get(consumed..).unwrap_or_default();
            match status {
                Ok(Status::StreamEnd) => return,
                Ok(_) if input.is_empty() && matches!(flush, FlushCompress::None) => return,
                Ok(_) => {}
                Err(error) => {
                    // Never half a member in the file: drop this one.
                    tracing::warn!("compressing access log lines failed: {error}");
                    self.out.truncate(self.member_start);
                    self.open = false;
                    self.ended = true;
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

    fn gunzip(bytes: &[u8]) -> String {
        let mut text = String::new();
        flate2::read::MultiGzDecoder::new(bytes)
            .read_to_string(&mut text)
            .unwrap();
        text
    }

    /// Members deflated in steps, ended, taken and started again read back
    /// as the text in order, at level 1 and 0 (stored blocks, past a stored
    /// block's 64 KiB), and no member is written for no text.
    #[test]
    fn members_read_back_as_one_stream() {
        let text: String = (0..3_000)
            .map(|n| format!("line {n} of the members test\n"))
            .collect();
        for level in [1, 0] {
            let mut members = Members::new(level);
            members.finish(b"");
            assert!(members.is_empty());
            let (first, rest) = text.split_at(70_000);
            for step in first.as_bytes().chunks(8 * 1024) {
                members.deflate(step);
            }
            members.finish(b"");
            members.finish(b"");
            let mut file = members.take(Vec::new());
            members.deflate(&rest.as_bytes()[..10]);
            members.finish(&rest.as_bytes()[10..]);
            file.extend(members.take(Vec::new()));
            assert_eq!(gunzip(&file), text, "level {level}");
            if level == 1 {
                assert!(file.len() * 5 < text.len(), "{} bytes", file.len());
            }
        }
    }
}
