//! The `[routes.<name>.verify]` table of `migrate.toml`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::request::{Request, RequestSet, split_method_and_target};

/// The most requests one `a..=b` range may expand to; a guard against typos.
const MAX_RANGE_LEN: i64 = 100_000;

/// The `[routes.<name>.verify]` table of `migrate.toml`: how to build requests
/// for a route and which differences to ignore. Owned by this crate; `migrate`
/// embeds it in its route settings.
///
/// ```toml
/// [routes.users.verify]
/// requests = ["/api/users", "/api/users/{id}", "HEAD /api/users/{id}"]
/// values.id = ["1..=6", "01", "+2", "abc"]
/// corpus = ["parity/users.requests"]
/// ignore = ["/*/lastSeen"]
/// unordered = [""]
/// ignore_headers = ["x-served-by"]
/// ```
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct VerifySpec {
    /// Request templates, `"METHOD /path"` or `"/path"` (GET); `{name}` is
    /// replaced by each of `values.name` (several placeholders: every combination).
    pub requests: Vec<String>,
    /// The values of each placeholder: strings are inserted verbatim (write
    /// percent-encoding yourself, like `"%2B2"`), integers as decimals, and a
    /// string `"a..=b"` stands for every integer from a to b.
    pub values: BTreeMap<String, Vec<TemplateValue>>,
    /// Corpus files, one `METHOD /path` per line, `#` comments; relative paths
    /// are read from the directory of `migrate.toml`.
    pub corpus: Vec<PathBuf>,
    /// JSON Pointers of body parts whose differences are ignored; `*` stands
    /// for any array index. A pointer also covers everything below it.
    pub ignore: Vec<String>,
    /// JSON Pointers (with `*`) of arrays whose order does not matter.
    pub unordered: Vec<String>,
    /// Response headers whose differences are ignored, besides the default
    /// ones (Date, Keep-Alive, Connection, Server and trace headers).
    pub ignore_headers: Vec<String>,
    /// Compare the headers ignored by default too.
    pub compare_default_ignored_headers: bool,
    /// Whether the order of keys in JSON objects counts: `"strict"` (the
    /// default; the contract fixes it) or `"ignore"` (clients do not depend on it).
    pub json_key_order: KeyOrder,
}

/// The `json_key_order` setting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyOrder {
    /// Keys in another order are an `order` difference.
    #[default]
    Strict,
    /// Keys in another order are counted as suppressed.
    Ignore,
}

/// One value of a template placeholder.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum TemplateValue {
    /// An integer, inserted as a decimal.
    Integer(i64),
    /// A string, inserted verbatim; `"a..=b"` is a range of integers.
    Text(String),
}

impl TemplateValue {
    fn expand(&self, name: &str, into: &mut Vec<String>) -> Result<(), Error> {
        match self {
            Self::Integer(value) => into.push(value.to_string()),
            Self::Text(text) => match parse_range(text) {
                Some((first, last)) => {
                    if last < first || last - first >= MAX_RANGE_LEN {
                        return Err(Error::Spec(format!(
                            "values.{name}: the range {text:?} must go upwards and hold at most {MAX_RANGE_LEN} values"
                        )));
                    }
                    into.extend((first..=last).map(|value| value.to_string()));
                }
                None => into.push(text.clone()),
            },
        }
        Ok(())
    }
}

fn parse_range(text: &str) -> Option<(i64, i64)> {
    let (first, last) = text.split_once("..=")?;
    Some((first.trim().parse().ok()?, last.trim().parse().ok()?))
}

/// A request template split into literal text and placeholder names.
enum Piece<'a> {
    Literal(&'a str),
    Placeholder(&'a str),
}

fn split_placeholders(target: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut pieces = Vec::new();
    let mut rest = target;
    while let Some(open) = rest.find('{') {
        pieces.push(Piece::Literal(&rest[..open]));
        let Some(close) = rest[open..].find('}') else {
            return Err(format!(
                "{target:?} has a '{{' without '}}'; write placeholders as {{name}}"
            ));
        };
        let name = &rest[open + 1..open + close];
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-');
        if !valid {
            return Err(format!(
                "{target:?} has the placeholder {{{name}}}; names use letters, digits, '_' and '-'"
            ));
        }
        pieces.push(Piece::Placeholder(name));
        rest = &rest[open + close + 1..];
    }
    if rest.contains('}') {
        return Err(format!(
            "{target:?} has a '}}' without '{{'; write placeholders as {{name}}"
        ));
    }
    pieces.push(Piece::Literal(rest));
    Ok(pieces)
}

impl VerifySpec {
    /// The endpoint templates as reports name them: `"GET /api/users/{id}"`.
    pub fn templates(&self) -> Result<Vec<String>, Error> {
        self.requests
            .iter()
            .map(|template| {
                let (method, target) = split_method_and_target(template)
                    .map_err(|message| Error::Spec(format!("requests: {message}")))?;
                Ok(format!("{method} {target}"))
            })
            .collect()
    }

    fn placeholder_values(&self, name: &str) -> Result<Vec<String>, Error> {
        let values = self
            .values
            .get(name)
            .or_else(|| self.values.get(&name.to_lowercase()))
            .ok_or_else(|| {
                Error::Spec(format!(
                    "a request template uses {{{name}}} but there is no values.{name}; add `values.{name} = [\"1..=3\", \"abc\"]` to the verify table"
                ))
            })?;
        let mut expanded = Vec::new();
        for value in values {
            value.expand(name, &mut expanded)?;
        }
        if expanded.is_empty() {
            return Err(Error::Spec(format!(
                "values.{name} is empty; give it at least one value"
            )));
        }
        Ok(expanded)
    }

    /// Every request the templates expand to, in order.
    pub fn template_requests(&self) -> Result<Vec<Request>, Error> {
        let mut requests = Vec::new();
        for (text, template) in self.requests.iter().zip(self.templates()?) {
            let (method, target) = split_method_and_target(text)
                .map_err(|message| Error::Spec(format!("requests: {message}")))?;
            let pieces = split_placeholders(target)
                .map_err(|message| Error::Spec(format!("requests: {message}")))?;
            let mut targets = vec![String::new()];
            for piece in &pieces {
                match piece {
                    Piece::Literal(literal) => {
                        targets
                            .iter_mut()
                            .for_each(|target| target.push_str(literal));
                    }
                    Piece::Placeholder(name) => {
                        let values = self.placeholder_values(name)?;
                        targets = targets
                            .iter()
                            .flat_map(|target| {
                                values.iter().map(move |value| format!("{target}{value}"))
                            })
                            .collect();
                    }
                }
            }
            requests.extend(targets.into_iter().map(|target| Request {
                method: method.clone(),
                target,
                template: template.clone(),
            }));
        }
        Ok(requests)
    }

    /// The route's own requests: the expanded templates, then the corpus
    /// files (relative paths read from `base_dir`).
    pub fn request_set(&self, base_dir: &Path) -> Result<RequestSet, Error> {
        let mut set = RequestSet::new();
        self.add_to(&mut set, base_dir)?;
        Ok(set)
    }

    /// Adds the route's own requests to `set`.
    pub fn add_to(&self, set: &mut RequestSet, base_dir: &Path) -> Result<(), Error> {
        let templates = self.templates()?;
        if !self.requests.is_empty() {
            set.add_templates("request templates", self.template_requests()?);
        }
        for corpus in &self.corpus {
            set.add_corpus(&base_dir.join(corpus), &templates, None)?;
        }
        Ok(())
    }
}
