//! The forum's data: loaded once at startup from a db.json-shaped file, validated,
//! kept compact ([`crate::records`]) and indexed, so that every request is a
//! lookup plus the writing of the records it answers with.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use serde::de::{
    self, DeserializeSeed, Deserializer as _, IgnoredAny, MapAccess, SeqAccess, Visitor,
};
use serde_json::Value;

use crate::id::{MAX_SAFE_INTEGER, id_from_number};
use crate::js_json;
use crate::records::{ListStream, Records, RecordsBuilder};

/// The data the repository ships: a copy of the original's db.json.
pub const BUILTIN_JSON: &str = include_str!("../data/db.json");

/// A data file that cannot be served. Its message names the file and the line and
/// column or the record (`users[2].id`) at fault.
#[derive(Debug, thiserror::Error)]
#[error("{origin}: {problem}")]
pub struct DataError {
    origin: String,
    problem: String,
}

/// A post whose `thread` or `user` names no record. It is served as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DanglingReference {
    /// e.g. `posts[5].thread`
    pub field: String,
    pub id: i64,
}

impl fmt::Display for DanglingReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.field.ends_with(".thread") {
            "thread"
        } else {
            "user"
        };
        write!(f, "{} = {}: no {kind} has this id", self.field, self.id)
    }
}

/// Validated, compact and indexed forum data.
#[derive(Debug)]
pub struct Dataset {
    users: Arc<Records>,
    user_by_id: IdMap<u32>,
    threads: Arc<Records>,
    thread_by_id: IdMap<u32>,
    posts: Arc<Records>,
    posts_by_thread: Groups,
    posts_by_user: Groups,
    dangling_references: Vec<DanglingReference>,
}

impl Dataset {
    /// The data the repository ships.
    pub fn builtin() -> Dataset {
        Dataset::from_json(BUILTIN_JSON, "the built-in data")
            .expect("the built-in data is valid (tested)")
    }

    /// Reads and validates a data file.
    pub fn from_file(path: &Path) -> Result<Dataset, DataError> {
        let origin = format!("data file {}", path.display());
        let text = std::fs::read_to_string(path).map_err(|error| DataError {
            origin: origin.clone(),
            problem: format!("cannot read it: {error}"),
        })?;
        Dataset::from_json(&text, &origin)
    }

    /// Validates and indexes db.json-shaped text; `origin` names it in errors.
    pub fn from_json(text: &str, origin: &str) -> Result<Dataset, DataError> {
        let invalid = |problem: String| DataError {
            origin: origin.to_owned(),
            problem,
        };
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let file = deserializer
            .deserialize_map(FileVisitor)
            .and_then(|file| deserializer.end().map(|()| file))
            .map_err(|error| invalid(error.to_string()))?;
        let missing =
            |schema: &Schema| invalid(format!("no `{}` array at the top level", schema.array));
        let users = file.users.ok_or_else(|| missing(&USERS))?;
        let threads = file.threads.ok_or_else(|| missing(&THREADS))?;
        let posts = file.posts.ok_or_else(|| missing(&POSTS))?;

        let user_by_id = unique_index(&USERS, &users).map_err(invalid)?;
        let thread_by_id = unique_index(&THREADS, &threads).map_err(invalid)?;
        let stride = ParsedArray::integers_per_record(&POSTS);
        let mut dangling_references = Vec::new();
        for (index, integers) in posts.integers.chunks_exact(stride).enumerate() {
            let [thread, user] = [integers[0], integers[1]];
            if !thread_by_id.contains_key(&thread) {
                let field = format!("posts[{index}].thread");
                dangling_references.push(DanglingReference { field, id: thread });
            }
            if !user_by_id.contains_key(&user) {
                let field = format!("posts[{index}].user");
                dangling_references.push(DanglingReference { field, id: user });
            }
        }
        let mut posts_by_thread = Groups::new(posts.integers.iter().step_by(stride).copied());
        let mut posts_by_user = Groups::new(posts.integers.iter().skip(1).step_by(stride).copied());
        let posts_records = posts.records.finish();
        posts_by_thread.prerender_if_short(&posts_records);
        posts_by_user.prerender_if_short(&posts_records);
        Ok(Dataset {
            users: Arc::new(users.records.finish()),
            user_by_id,
            threads: Arc::new(threads.records.finish()),
            thread_by_id,
            posts: Arc::new(posts_records),
            posts_by_thread,
            posts_by_user,
            dangling_references,
        })
    }

    /// Posts whose `thread` or `user` names no record, in file order.
    pub fn dangling_references(&self) -> &[DanglingReference] {
        &self.dangling_references
    }

    /// `JSON.stringify(users)`, written while it is sent.
    pub fn users_list(&self) -> ListStream {
        ListStream::new(Arc::clone(&self.users))
    }

    /// The user whose `id` is `id`, serialized.
    pub fn user_json(&self, id: Option<i64>) -> Option<Bytes> {
        let record = *self.user_by_id.get(&id?)?;
        Some(self.users.record(record))
    }

    /// `JSON.stringify(threads)`, written while it is sent.
    pub fn threads_list(&self) -> ListStream {
        ListStream::new(Arc::clone(&self.threads))
    }

    /// The thread whose `id` is `id`, serialized.
    pub fn thread_json(&self, id: Option<i64>) -> Option<Bytes> {
        let record = *self.thread_by_id.get(&id?)?;
        Some(self.threads.record(record))
    }

    /// `JSON.stringify(posts)`, written while it is sent.
    pub fn posts_list(&self) -> ListStream {
        ListStream::new(Arc::clone(&self.posts))
    }

    /// The posts whose `thread` is `thread_id`, in file order, as a JSON array.
    pub fn posts_in_thread_json(&self, thread_id: Option<i64>) -> Bytes {
        self.posts_by_thread.json(&self.posts, thread_id)
    }

    /// The posts whose `user` is `user_id`, in file order, as a JSON array.
    pub fn posts_by_user_json(&self, user_id: Option<i64>) -> Bytes {
        self.posts_by_user.json(&self.posts, user_id)
    }

    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    pub fn thread_count(&self) -> usize {
        self.threads.len()
    }

    pub fn post_count(&self) -> usize {
        self.posts.len()
    }
}

/// A hash map keyed by record ids. The ids come from the operator's own data
/// file, so a fast multiplicative hash serves (SipHash was 7 % of startup).
type IdMap<V> = HashMap<i64, V, BuildHasherDefault<IdHasher>>;

/// Fibonacci hashing of one integer: consecutive ids land in distinct buckets.
#[derive(Debug, Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(byte)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_i64(&mut self, id: i64) {
        self.0 = (id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// Records grouped by an integer field, in file order within each group: one
/// array of record numbers, group after group, and where each group lies in it.
#[derive(Debug)]
struct Groups {
    /// Per id, its group's start in `members` and its length.
    spans: IdMap<(u32, u32)>,
    members: Vec<u32>,
    /// Each group's JSON array, written once, when the records' whole list is
    /// short (then all groups together are about as short).
    prerendered: Option<IdMap<Bytes>>,
}

impl Groups {
    /// Groups record `i` under the `i`th of `keys`.
    fn new(keys: impl Iterator<Item = i64> + Clone) -> Groups {
        let mut spans: IdMap<(u32, u32)> = IdMap::default();
        let mut count = 0usize;
        for key in keys.clone() {
            spans.entry(key).or_default().1 += 1;
            count += 1;
        }
        let mut start = 0u32;
        for span in spans.values_mut() {
            span.0 = start;
            start += span.1;
            span.1 = 0;
        }
        let mut members = vec![0u32; count];
        for (record, key) in keys.enumerate() {
            let span = spans.get_mut(&key).expect("counted above");
            members[(span.0 + span.1) as usize] = record as u32;
            span.1 += 1;
        }
        spans.shrink_to_fit();
        Groups {
            spans,
            members,
            prerendered: None,
        }
    }

    /// Writes every group's array now if `records` is a short list (one
    /// written at startup), so that answering one is a reference count.
    fn prerender_if_short(&mut self, records: &Records) {
        if !records.is_prerendered() {
            return;
        }
        let rendered = self
            .spans
            .keys()
            .map(|&id| (id, records.join(self.get(Some(id)))))
            .collect();
        self.prerendered = Some(rendered);
    }

    /// The JSON array of the records of group `id` (`[]` for none).
    fn json(&self, records: &Records, id: Option<i64>) -> Bytes {
        match &self.prerendered {
            Some(rendered) => match id.and_then(|id| rendered.get(&id)) {
                Some(body) => body.clone(),
                None => Bytes::from_static(b"[]"),
            },
            None => records.join(self.get(id)),
        }
    }

    fn get(&self, id: Option<i64>) -> &[u32] {
        match id.and_then(|id| self.spans.get(&id)) {
            Some(&(start, len)) => &self.members[start as usize..(start + len) as usize],
            None => &[],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FieldType {
    /// An integer within ±`MAX_SAFE_INTEGER`.
    Integer,
    String,
}

/// The required fields of one top-level array's records. Other fields are served
/// as they are.
struct Schema {
    array: &'static str,
    fields: &'static [(&'static str, FieldType)],
    /// The field that must be unique, if any (it is then the first Integer field).
    unique: Option<&'static str>,
}

const USERS: Schema = Schema {
    array: "users",
    fields: &[
        ("id", FieldType::Integer),
        ("username", FieldType::String),
        ("name", FieldType::String),
        ("bio", FieldType::String),
    ],
    unique: Some("id"),
};

const THREADS: Schema = Schema {
    array: "threads",
    fields: &[
        ("id", FieldType::Integer),
        ("title", FieldType::String),
        ("createdBy", FieldType::Integer),
    ],
    unique: Some("id"),
};

const POSTS: Schema = Schema {
    array: "posts",
    fields: &[
        ("thread", FieldType::Integer),
        ("text", FieldType::String),
        ("user", FieldType::Integer),
    ],
    unique: None,
};

/// One top-level array, serialized, with each record's Integer fields in schema order.
#[derive(Debug)]
struct ParsedArray {
    records: RecordsBuilder,
    integers: Vec<i64>,
}

impl ParsedArray {
    fn integers_per_record(schema: &Schema) -> usize {
        schema
            .fields
            .iter()
            .filter(|(_, t)| *t == FieldType::Integer)
            .count()
    }
}

/// Maps each record's unique id to its position, rejecting duplicates.
fn unique_index(schema: &Schema, parsed: &ParsedArray) -> Result<IdMap<u32>, String> {
    let field = schema.unique.expect("schema has a unique field");
    let stride = ParsedArray::integers_per_record(schema);
    let mut index =
        IdMap::with_capacity_and_hasher(parsed.integers.len() / stride, Default::default());
    for (record, integers) in parsed.integers.chunks_exact(stride).enumerate() {
        match index.entry(integers[0]) {
            Entry::Vacant(slot) => {
                slot.insert(record as u32);
            }
            Entry::Occupied(first) => {
                let array = schema.array;
                return Err(format!(
                    "{array}[{record}].{field}: duplicate id {}, already used by {array}[{}]",
                    integers[0],
                    first.get()
                ));
            }
        }
    }
    Ok(index)
}

#[derive(Default)]
struct ParsedFile {
    users: Option<ParsedArray>,
    threads: Option<ParsedArray>,
    posts: Option<ParsedArray>,
}

/// Reads the top-level object, streaming each array's records into their
/// serialized form. A key given twice counts once, with its last value, as in
/// `JSON.parse`; unknown keys are ignored.
struct FileVisitor;

impl<'de> Visitor<'de> for FileVisitor {
    type Value = ParsedFile;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object with the arrays `users`, `threads` and `posts`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ParsedFile, A::Error> {
        let mut file = ParsedFile::default();
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "users" => file.users = Some(map.next_value_seed(&USERS)?),
                "threads" => file.threads = Some(map.next_value_seed(&THREADS)?),
                "posts" => file.posts = Some(map.next_value_seed(&POSTS)?),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(file)
    }
}

impl<'de> DeserializeSeed<'de> for &'static Schema {
    type Value = ParsedArray;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<ParsedArray, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for &'static Schema {
    type Value = ParsedArray;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "`{}` to be an array of objects", self.array)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ParsedArray, A::Error> {
        let mut parsed = ParsedArray {
            records: RecordsBuilder::new(),
            integers: Vec::new(),
        };
        let mut index = 0usize;
        while let Some(record) = seq.next_element::<Value>()? {
            if index == u32::MAX as usize {
                return Err(de::Error::custom(format!(
                    "`{}` has too many records",
                    self.array
                )));
            }
            validate(self, index, &record, &mut parsed.integers).map_err(de::Error::custom)?;
            parsed.records.push(&record);
            index += 1;
        }
        Ok(parsed)
    }
}

/// Checks one record's required fields, appending its Integer fields to `integers`.
fn validate(
    schema: &Schema,
    index: usize,
    record: &Value,
    integers: &mut Vec<i64>,
) -> Result<(), String> {
    let array = schema.array;
    let Value::Object(fields) = record else {
        return Err(format!(
            "{array}[{index}]: expected an object, found {}",
            excerpt(record)
        ));
    };
    for &(name, field_type) in schema.fields {
        let value = fields
            .get(name)
            .ok_or_else(|| format!("{array}[{index}].{name}: missing (every record needs it)"))?;
        match field_type {
            FieldType::String if value.is_string() => {}
            FieldType::String => {
                return Err(format!(
                    "{array}[{index}].{name}: expected a string, found {}",
                    excerpt(value)
                ));
            }
            FieldType::Integer => {
                let integer = value.as_f64().and_then(id_from_number).ok_or_else(|| {
                    format!(
                        "{array}[{index}].{name}: expected an integer within ±{MAX_SAFE_INTEGER}, found {}",
                        excerpt(value)
                    )
                })?;
                integers.push(integer);
            }
        }
    }
    Ok(())
}

/// A value as JSON, shortened for an error message.
fn excerpt(value: &Value) -> String {
    const LIMIT: usize = 40;
    let text = js_json::to_string(value);
    match text.char_indices().nth(LIMIT) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_data_is_valid_and_complete() {
        let data = Dataset::builtin();
        assert_eq!(
            (data.user_count(), data.thread_count(), data.post_count()),
            (4, 3, 6)
        );
        assert!(data.dangling_references().is_empty());
    }

    fn load(text: &str) -> Result<Dataset, String> {
        Dataset::from_json(text, "test.json").map_err(|e| e.to_string())
    }

    const VALID: &str = r#"{"users":[{"id":1,"username":"u","name":"n","bio":"b"}],
        "threads":[{"id":1,"title":"t","createdBy":1}],
        "posts":[{"thread":1,"text":"x","user":1}]}"#;

    #[test]
    fn extra_fields_and_integral_numbers_are_kept_as_javascript_would() {
        let text = r#"{"users":[{"bio":"b","id":1.0,"username":"u","name":"n","x":[1e2,-0]}],
            "threads":[],"posts":[],"extra":{}}"#;
        let data = load(text).unwrap();
        assert_eq!(
            &data.user_json(Some(1)).unwrap()[..],
            br#"{"bio":"b","id":1,"username":"u","name":"n","x":[100,0]}"#
        );
        assert_eq!(data.threads_list().len(), 2);
        assert_eq!(&data.posts_in_thread_json(Some(1))[..], b"[]");
    }

    #[test]
    fn a_key_given_twice_counts_with_its_last_value() {
        let text = VALID.replacen(r#"{"users":"#, r#"{"users":[],"users":"#, 1);
        assert_eq!(load(&text).unwrap().user_count(), 1);
    }

    /// (how to break VALID, the error message expected to contain)
    const INVALID_CASES: &[(&str, &str, &str)] = &[
        (
            r#""id":1,"username""#,
            r#""id":"1","username""#,
            "users[0].id: expected an integer",
        ),
        (
            r#""id":1,"username""#,
            r#""id":1.5,"username""#,
            "users[0].id: expected an integer",
        ),
        (
            r#""id":1,"username""#,
            r#""id":9007199254740992,"username""#,
            "users[0].id: expected an integer",
        ),
        (r#""username":"u","#, "", "users[0].username: missing"),
        (
            r#""bio":"b""#,
            r#""bio":null"#,
            "users[0].bio: expected a string, found null",
        ),
        (
            r#""createdBy":1"#,
            r#""createdBy":true"#,
            "threads[0].createdBy: expected an integer",
        ),
        (
            r#""title":"t""#,
            r#""title":5"#,
            "threads[0].title: expected a string",
        ),
        (
            r#""thread":1"#,
            r#""thread":"1""#,
            "posts[0].thread: expected an integer",
        ),
        (
            r#""user":1}"#,
            r#""user":[1]}"#,
            "posts[0].user: expected an integer",
        ),
        (
            r#""text":"x""#,
            r#""text":{}"#,
            "posts[0].text: expected a string",
        ),
        (
            r#""posts":["#,
            r#""posts":[5,"#,
            "posts[0]: expected an object, found 5",
        ),
        (
            r#""threads":[{"id":1,"title":"t","createdBy":1}]"#,
            r#""threads":{}"#,
            "`threads` to be an array",
        ),
        (
            r#""posts":[{"thread":1,"text":"x","user":1}]"#,
            r#""postz":[]"#,
            "no `posts` array",
        ),
        ("]}", "]", "EOF while parsing an object at line 3 column"),
        ("]}", "]}}", "trailing characters at line 3 column"),
        (
            "{",
            "[",
            "invalid type: sequence, expected an object with the arrays",
        ),
    ];

    #[test]
    fn malformed_data_is_rejected_with_the_record_or_position() {
        for &(from, to, expected) in INVALID_CASES {
            let text = VALID.replacen(from, to, 1);
            assert_ne!(text, VALID, "case {from:?} did not apply");
            let error = load(&text).expect_err(&text);
            assert!(error.starts_with("test.json: "), "{error}");
            assert!(
                error.contains(expected),
                "{error:?} does not contain {expected:?}"
            );
        }
    }

    #[test]
    fn short_data_is_answered_from_bytes_written_once_and_long_data_written_per_answer() {
        let short = Dataset::builtin();
        let same = |a: Bytes, b: Bytes| a.as_ptr() == b.as_ptr();
        assert!(same(
            short.user_json(Some(1)).unwrap(),
            short.user_json(Some(1)).unwrap()
        ));
        assert!(same(
            short.posts_in_thread_json(Some(1)),
            short.posts_in_thread_json(Some(1))
        ));
        assert!(same(
            short.posts_by_user_json(Some(1)),
            short.posts_by_user_json(Some(1))
        ));
        assert_eq!(&short.posts_in_thread_json(Some(99))[..], b"[]");
        // Past 64 KiB of posts: the same answers, written when asked.
        let posts: Vec<String> = (0..2000)
            .map(|n| {
                format!(
                    r#"{{"thread":{},"text":"{}","user":{}}}"#,
                    n % 3,
                    "w".repeat(40),
                    n % 7
                )
            })
            .collect();
        let text = format!(
            r#"{{"users":[],"threads":[],"posts":[{}]}}"#,
            posts.join(",")
        );
        let long = load(&text).unwrap();
        let in_thread = long.posts_in_thread_json(Some(2));
        let expected: Vec<&str> = posts
            .iter()
            .skip(2)
            .step_by(3)
            .map(String::as_str)
            .collect();
        assert_eq!(in_thread, format!("[{}]", expected.join(",")).into_bytes());
        assert!(!same(in_thread, long.posts_in_thread_json(Some(2))));
        let by_user: Vec<&str> = posts
            .iter()
            .skip(5)
            .step_by(7)
            .map(String::as_str)
            .collect();
        assert_eq!(
            long.posts_by_user_json(Some(5)),
            format!("[{}]", by_user.join(",")).into_bytes()
        );
    }

    #[test]
    fn record_errors_carry_the_position_too() {
        let error = load(&VALID.replace(r#""title":"t""#, r#""title":5"#)).unwrap_err();
        assert!(error.contains(" at line 2 column"), "{error}");
    }

    #[test]
    fn duplicate_ids_name_both_records() {
        let text = r#"{"users":[{"id":1,"username":"u","name":"n","bio":"b"},
            {"id":2,"username":"u","name":"n","bio":"b"},{"id":1,"username":"u","name":"n","bio":"b"}],
            "threads":[],"posts":[]}"#;
        assert_eq!(
            load(text).unwrap_err(),
            "test.json: users[2].id: duplicate id 1, already used by users[0]"
        );
        let text = r#"{"users":[],"posts":[],"threads":[{"id":7,"title":"t","createdBy":1},
            {"id":7.0,"title":"t","createdBy":1}]}"#;
        assert_eq!(
            load(text).unwrap_err(),
            "test.json: threads[1].id: duplicate id 7, already used by threads[0]"
        );
    }

    #[test]
    fn dangling_references_are_reported_and_served() {
        let text = VALID.replace(r#""thread":1"#, r#""thread":9"#);
        let data = load(&text).unwrap();
        let dangling: Vec<String> = data
            .dangling_references()
            .iter()
            .map(|d| d.to_string())
            .collect();
        assert_eq!(dangling, ["posts[0].thread = 9: no thread has this id"]);
        assert_eq!(
            &data.posts_in_thread_json(Some(9))[..],
            br#"[{"thread":9,"text":"x","user":1}]"#
        );
    }

    #[test]
    fn joins_records_in_file_order() {
        let data = Dataset::builtin();
        assert_eq!(
            &data.posts_by_user_json(Some(1))[..],
            br#"[{"thread":2,"text":"I'll bring my guitar","user":1},{"thread":3,"text":"I need a new guitar to play the most savory licks in Ooo","user":1}]"#
        );
        assert_eq!(&data.posts_by_user_json(None)[..], b"[]");
        assert_eq!(data.user_json(Some(5)), None);
        assert_eq!(data.user_json(None), None);
    }
}
