//! Records kept compact and written back, on demand, as the exact bytes
//! `JSON.stringify` writes.
//!
//! A record is stored as its values only: its keys, in order, and the kind of
//! each value (integer, string, other) make its *shape*, stored once and shared
//! by every record of the same shape. An integer is a zigzag varint, a string its
//! escaped text without the quotes, any other value its serialized JSON. At a
//! million posts this holds about 80 bytes a post where the serialized JSON took
//! 113, and the lists are written while they are sent ([`ListStream`]) instead
//! of being kept whole.
//!
//! No I/O here, and nothing about HTTP beyond the list body's chunks.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use serde_json::Value;

use crate::js_json;

/// Shapes beyond this many are not interned: such records are stored whole.
const MAX_SHAPES: usize = 4096;
/// The shape id of a record stored whole, as its serialized JSON.
const WHOLE: u64 = 0;
/// Integers stored as varints: the ones `JSON.stringify` prints as integers.
const EXACT_IN_A_DOUBLE: u64 = 1 << 53;
/// About how many bytes of a list one chunk of its body carries.
const CHUNK_BYTES: usize = 64 * 1024;
/// A list this short is written once, when the records are built, and each
/// answer shares those bytes (the data never changes while a server runs).
const PRERENDERED_LIST_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Integer,
    String,
    Other,
}

impl Kind {
    fn of(value: &Value) -> Kind {
        match value {
            Value::Number(number) => match number.as_i64() {
                Some(integer) if integer.unsigned_abs() <= EXACT_IN_A_DOUBLE => Kind::Integer,
                _ => Kind::Other,
            },
            Value::String(_) => Kind::String,
            _ => Kind::Other,
        }
    }
}

/// The keys of a record, in order, with the kind of each value.
#[derive(Debug)]
struct Shape {
    /// Per field, `"key":` as serialized, and the value's kind.
    fields: Vec<(Box<[u8]>, Kind)>,
    /// The keys as they are.
    keys: Vec<Box<str>>,
}

impl Shape {
    fn matches(&self, record: &serde_json::Map<String, Value>) -> bool {
        self.fields.len() == record.len()
            && self
                .fields
                .iter()
                .zip(&self.keys)
                .zip(record)
                .all(|(((_, kind), own), (key, value))| *kind == Kind::of(value) && **own == **key)
    }
}

/// A JSON array of records, compact; record `i` is written back with
/// [`Records::write_record`].
#[derive(Debug)]
pub(crate) struct Records {
    shapes: Vec<Shape>,
    data: Vec<u8>,
    starts: Offsets,
    /// The length of the whole array serialized.
    array_json_len: usize,
    /// The whole array serialized, when it is at most [`PRERENDERED_LIST_BYTES`].
    prerendered: Option<Bytes>,
    /// With `prerendered`: where each record starts in it, and one entry past
    /// the closing bracket, so that record `i` is `starts[i]..starts[i + 1] - 1`
    /// (its comma, or the bracket, left out).
    prerendered_starts: Vec<u32>,
}

impl Records {
    pub(crate) fn len(&self) -> usize {
        self.starts.len() - 1
    }

    /// Appends record `record` as `JSON.stringify` writes it.
    pub(crate) fn write_record(&self, record: u32, out: &mut Vec<u8>) {
        let record = record as usize;
        let mut bytes = &self.data[self.starts.get(record)..self.starts.get(record + 1)];
        let shape = read_varint(&mut bytes);
        if shape == WHOLE {
            out.extend_from_slice(bytes);
            return;
        }
        out.push(b'{');
        for (position, (key_json, kind)) in
            self.shapes[shape as usize - 1].fields.iter().enumerate()
        {
            if position > 0 {
                out.push(b',');
            }
            out.extend_from_slice(key_json);
            match kind {
                Kind::Integer => write_integer(out, unzigzag(read_varint(&mut bytes))),
                Kind::String => {
                    let len = read_varint(&mut bytes) as usize;
                    out.push(b'"');
                    out.extend_from_slice(&bytes[..len]);
                    out.push(b'"');
                    bytes = &bytes[len..];
                }
                Kind::Other => {
                    let len = read_varint(&mut bytes) as usize;
                    out.extend_from_slice(&bytes[..len]);
                    bytes = &bytes[len..];
                }
            }
        }
        out.push(b'}');
    }

    /// Whether the whole list was written at startup (it is short).
    pub(crate) fn is_prerendered(&self) -> bool {
        self.prerendered.is_some()
    }

    /// One record, serialized: of a short list, a slice of its bytes written
    /// at startup (no copy); else written now.
    pub(crate) fn record(&self, record: u32) -> Bytes {
        if let Some(all) = &self.prerendered {
            let index = record as usize;
            let start = self.prerendered_starts[index] as usize;
            let end = self.prerendered_starts[index + 1] as usize - 1;
            return all.slice(start..end);
        }
        let mut out = Vec::with_capacity(128);
        self.write_record(record, &mut out);
        Bytes::from(out)
    }

    /// The records at `records`, in that order, as a JSON array.
    pub(crate) fn join(&self, records: &[u32]) -> Bytes {
        if records.is_empty() {
            return Bytes::from_static(b"[]");
        }
        let mut body = Vec::with_capacity(records.len() * 96 + 2);
        for (position, &record) in records.iter().enumerate() {
            body.push(if position == 0 { b'[' } else { b',' });
            self.write_record(record, &mut body);
        }
        body.push(b']');
        Bytes::from(body)
    }

    /// The length of the whole array serialized (the list body's Content-Length).
    pub(crate) fn array_json_len(&self) -> usize {
        self.array_json_len
    }
}

/// The whole array as a body written while it is sent, in chunks of about
/// 64 KiB, so that a list of a million records costs no copy of itself.
#[derive(Debug)]
pub struct ListStream {
    records: Arc<Records>,
    next: usize,
    done: bool,
}

impl ListStream {
    pub(crate) fn new(records: Arc<Records>) -> ListStream {
        ListStream {
            records,
            next: 0,
            done: false,
        }
    }

    /// The whole body at once, when the list is short enough to be kept
    /// written ([`PRERENDERED_LIST_BYTES`]); else it is written while sent.
    pub fn prerendered(&self) -> Option<Bytes> {
        self.records.prerendered.clone()
    }

    /// The body's length in bytes.
    pub fn len(&self) -> u64 {
        self.records.array_json_len() as u64
    }

    /// Never: an empty list is `[]`.
    pub fn is_empty(&self) -> bool {
        false
    }

    fn next_chunk(&mut self) -> Option<Bytes> {
        if self.done {
            return None;
        }
        let count = self.records.len();
        let mut chunk = Vec::with_capacity(CHUNK_BYTES + 1024);
        if self.next == 0 {
            chunk.push(b'[');
        }
        while self.next < count && chunk.len() < CHUNK_BYTES {
            if self.next > 0 {
                chunk.push(b',');
            }
            self.records.write_record(self.next as u32, &mut chunk);
            self.next += 1;
        }
        if self.next == count {
            chunk.push(b']');
            self.done = true;
        }
        Some(Bytes::from(chunk))
    }
}

impl futures_util::Stream for ListStream {
    type Item = Result<Bytes, std::convert::Infallible>;

    fn poll_next(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Poll::Ready(self.get_mut().next_chunk().map(Ok))
    }
}

/// Builds [`Records`] one record at a time.
#[derive(Debug, Default)]
pub(crate) struct RecordsBuilder {
    shapes: Vec<Shape>,
    /// Shape ids (1-based) by a hash of their keys and kinds.
    shape_ids: HashMap<u64, Vec<u32>>,
    data: Vec<u8>,
    starts: Offsets,
    /// The serialized length of the records so far, without the separators.
    records_json_len: usize,
    scratch: Vec<u8>,
}

impl RecordsBuilder {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn push(&mut self, record: &Value) {
        self.starts.push(self.data.len());
        let fields = match record {
            Value::Object(fields) => fields,
            _ => return self.push_whole(record),
        };
        let Some(shape) = self.shape_of(fields) else {
            return self.push_whole(record);
        };
        write_varint(&mut self.data, u64::from(shape));
        let mut json_len = 2 + fields.len().saturating_sub(1);
        for ((key_json, kind), (_, value)) in
            self.shapes[shape as usize - 1].fields.iter().zip(fields)
        {
            json_len += key_json.len();
            match (kind, value) {
                (Kind::Integer, Value::Number(number)) => {
                    let integer = number.as_i64().expect("classified as an integer");
                    write_varint(&mut self.data, zigzag(integer));
                    json_len += integer_len(integer);
                }
                (Kind::String, Value::String(text)) => {
                    self.scratch.clear();
                    js_json::write_value(&mut self.scratch, value);
                    let escaped = &self.scratch[1..self.scratch.len() - 1];
                    write_varint(&mut self.data, escaped.len() as u64);
                    self.data.extend_from_slice(escaped);
                    json_len += escaped.len() + 2;
                    debug_assert!(escaped.len() >= text.len());
                }
                _ => {
                    self.scratch.clear();
                    js_json::write_value(&mut self.scratch, value);
                    write_varint(&mut self.data, self.scratch.len() as u64);
                    self.data.extend_from_slice(&self.scratch);
                    json_len += self.scratch.len();
                }
            }
        }
        self.records_json_len += json_len;
    }

    fn push_whole(&mut self, record: &Value) {
        write_varint(&mut self.data, WHOLE);
        let before = self.data.len();
        js_json::write_value(&mut self.data, record);
        self.records_json_len += self.data.len() - before;
    }

    /// The id of `fields`' shape, interned now if new; `None` past [`MAX_SHAPES`].
    fn shape_of(&mut self, fields: &serde_json::Map<String, Value>) -> Option<u32> {
        let mut hash = FieldHasher::default();
        for (key, value) in fields {
            hash.add(key.as_bytes(), Kind::of(value) as u64);
        }
        let candidates = self.shape_ids.entry(hash.0).or_default();
        if let Some(&id) = candidates
            .iter()
            .find(|&&id| self.shapes[id as usize - 1].matches(fields))
        {
            return Some(id);
        }
        if self.shapes.len() >= MAX_SHAPES {
            return None;
        }
        let serialized = fields
            .iter()
            .map(|(key, value)| {
                let mut key_json = Vec::with_capacity(key.len() + 3);
                js_json::write_value(&mut key_json, &Value::String(key.clone()));
                key_json.push(b':');
                (key_json.into_boxed_slice(), Kind::of(value))
            })
            .collect();
        self.shapes.push(Shape {
            fields: serialized,
            keys: fields.keys().map(|key| key.as_str().into()).collect(),
        });
        let id = self.shapes.len() as u32;
        candidates.push(id);
        Some(id)
    }

    pub(crate) fn finish(mut self) -> Records {
        let count = self.starts.len();
        self.starts.push(self.data.len());
        self.data.shrink_to_fit();
        self.starts.shrink_to_fit();
        let mut records = Records {
            shapes: self.shapes,
            data: self.data,
            starts: self.starts,
            array_json_len: self.records_json_len + count.saturating_sub(1) + 2,
            prerendered: None,
            prerendered_starts: Vec::new(),
        };
        if records.array_json_len <= PRERENDERED_LIST_BYTES {
            let all: Vec<u32> = (0..count as u32).collect();
            let whole = records.join(&all);
            // Each record follows the `[` or a `,` and is followed by a `,` or the `]`.
            let mut starts = Vec::with_capacity(count + 1);
            let mut scratch = Vec::new();
            let mut at = 1;
            for record in all {
                starts.push(at);
                scratch.clear();
                records.write_record(record, &mut scratch);
                at += scratch.len() as u32 + 1;
            }
            starts.push(at);
            records.prerendered_starts = starts;
            records.prerendered = Some(whole);
        }
        records
    }
}

/// Byte offsets into [`Records::data`], 4 bytes each: the low 32 bits, and the
/// positions at which the high bits step up (none below 4 GiB of data).
#[derive(Debug, Default)]
struct Offsets {
    low: Vec<u32>,
    /// The index of each entry where the offset passed another multiple of 4 GiB
    /// (repeated when it passed several at once).
    steps: Vec<u32>,
    last: usize,
}

impl Offsets {
    fn push(&mut self, offset: usize) {
        let index = self.low.len() as u32;
        for _ in (self.last >> 32)..(offset >> 32) {
            self.steps.push(index);
        }
        self.last = offset;
        self.low.push(offset as u32);
    }

    fn get(&self, index: usize) -> usize {
        let high = self.steps.partition_point(|&step| step as usize <= index);
        (high << 32) | self.low[index] as usize
    }

    fn len(&self) -> usize {
        self.low.len()
    }

    fn shrink_to_fit(&mut self) {
        self.low.shrink_to_fit();
    }
}

/// FNV-1a over the keys and kinds of a record's fields.
#[derive(Debug)]
struct FieldHasher(u64);

impl Default for FieldHasher {
    fn default() -> Self {
        FieldHasher(0xcbf2_9ce4_8422_2325)
    }
}

impl FieldHasher {
    fn add(&mut self, key: &[u8], kind: u64) {
        for &byte in key.iter().chain(&[0xff, kind as u8]) {
            self.0 ^= u64::from(byte);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

fn write_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn read_varint(bytes: &mut &[u8]) -> u64 {
    let mut value = 0u64;
    let mut shift = 0;
    loop {
        let byte = bytes[0];
        *bytes = &bytes[1..];
        value |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return value;
        }
        shift += 7;
    }
}

fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

fn unzigzag(value: u64) -> i64 {
    (value >> 1) as i64 ^ -((value & 1) as i64)
}

fn write_integer(out: &mut Vec<u8>, value: i64) {
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

fn integer_len(value: i64) -> usize {
    itoa::Buffer::new().format(value).len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(json: &str) -> Arc<Records> {
        let values: Vec<Value> = serde_json::from_str(json).unwrap();
        let mut builder = RecordsBuilder::new();
        for value in &values {
            builder.push(value);
        }
        Arc::new(builder.finish())
    }

    fn whole(records: &Arc<Records>) -> Vec<u8> {
        let mut stream = ListStream::new(Arc::clone(records));
        let mut body = Vec::new();
        while let Some(chunk) = stream.next_chunk() {
            body.extend_from_slice(&chunk);
        }
        body
    }

    #[test]
    fn writes_back_what_json_stringify_writes() {
        let json = r#"[{"id":1,"name":"a\"b\n\u0001é"},{"id":-9007199254740992,"name":""},
            {"name":"x","id":2},{"id":1.5,"name":"y","extra":[1e2,null,{"k":true}]},
            {},{"id":9007199254740993,"name":"z"},{"id":"7","name":3}]"#;
        let records = records(json);
        let want: Vec<Value> = serde_json::from_str(json).unwrap();
        for (index, value) in want.iter().enumerate() {
            assert_eq!(
                records.record(index as u32),
                js_json::to_string(value).as_bytes(),
                "record {index}"
            );
        }
        let array = js_json::to_string(&Value::Array(want));
        assert_eq!(records.array_json_len(), array.len());
        assert_eq!(whole(&records), array.as_bytes());
        assert_eq!(
            &records.join(&[2, 0])[..],
            r#"[{"name":"x","id":2},{"id":1,"name":"a\"b\n\u0001é"}]"#.as_bytes()
        );
    }

    #[test]
    fn records_of_one_shape_share_it_and_many_shapes_are_stored_whole() {
        let same = records(r#"[{"a":1,"b":"x"},{"a":2,"b":"y"},{"a":3,"b":"z"}]"#);
        assert_eq!(same.shapes.len(), 1);
        let many: Vec<String> = (0..MAX_SHAPES + 10)
            .map(|index| format!(r#"{{"k{index}":{index}}}"#))
            .collect();
        let many_json = format!("[{}]", many.join(","));
        let many_records = records(&many_json);
        assert_eq!(many_records.shapes.len(), MAX_SHAPES);
        assert_eq!(whole(&many_records), many_json.as_bytes());
    }

    #[test]
    fn short_lists_are_written_once_and_long_ones_while_sent() {
        let short = records(r#"[{"id":1,"name":"a"},{"id":2,"name":"b"}]"#);
        let list = ListStream::new(Arc::clone(&short));
        assert_eq!(
            list.prerendered().as_deref(),
            Some(&br#"[{"id":1,"name":"a"},{"id":2,"name":"b"}]"#[..])
        );
        let many: Vec<String> = (0..2000)
            .map(|index| format!(r#"{{"id":{index},"text":"{}"}}"#, "w".repeat(40)))
            .collect();
        let long = records(&format!("[{}]", many.join(",")));
        assert!(long.array_json_len() > PRERENDERED_LIST_BYTES);
        assert_eq!(ListStream::new(long).prerendered(), None);
    }

    #[test]
    fn a_record_of_a_short_list_is_its_slice_of_the_list_and_of_a_long_one_written_now() {
        let json = r#"[{"id":1,"name":"a"},{"id":22,"name":"b\\\"c"},7,{"id":3}]"#;
        let short = records(json);
        let all = short.prerendered.clone().unwrap();
        let expected = [
            r#"{"id":1,"name":"a"}"#,
            r#"{"id":22,"name":"b\\\"c"}"#,
            "7",
            r#"{"id":3}"#,
        ];
        for (index, text) in expected.iter().enumerate() {
            let record = short.record(index as u32);
            assert_eq!(&record[..], text.as_bytes(), "record {index}");
            // The same bytes, not a copy.
            let offset = (record.as_ptr() as usize).wrapping_sub(all.as_ptr() as usize);
            assert!(
                offset < all.len(),
                "record {index} is not a slice of the list"
            );
        }
        let many: Vec<String> = (0..2000)
            .map(|index| format!(r#"{{"id":{index},"text":"{}"}}"#, "w".repeat(40)))
            .collect();
        let long = records(&format!("[{}]", many.join(",")));
        assert_eq!(&long.record(1999)[..], many[1999].as_bytes());
    }

    #[test]
    fn empty_and_large_lists_stream_whole() {
        let empty = records("[]");
        assert_eq!(whole(&empty), b"[]");
        assert_eq!(empty.array_json_len(), 2);
        let many: Vec<String> = (0..5000)
            .map(|index| format!(r#"{{"id":{index},"text":"{}"}}"#, "w".repeat(index % 50)))
            .collect();
        let json = format!("[{}]", many.join(","));
        let records = records(&json);
        assert_eq!(records.array_json_len(), json.len());
        assert_eq!(whole(&records), json.as_bytes());
    }

    #[test]
    fn offsets_step_past_4_gib() {
        let mut offsets = Offsets::default();
        for offset in [0, 10, (1 << 32) - 1, (1 << 32) + 5, (3 << 32) + 1, 3 << 33] {
            offsets.push(offset);
        }
        let read: Vec<usize> = (0..offsets.len()).map(|index| offsets.get(index)).collect();
        assert_eq!(
            read,
            [0, 10, (1 << 32) - 1, (1 << 32) + 5, (3 << 32) + 1, 3 << 33]
        );
    }
}
