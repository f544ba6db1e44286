//! The parameters of a Query API request: flat `Name=value` pairs where lists
//! are spelled `Name.member.N` and structures `Name.Field`, for example
//! `Conditions.member.1.PathPatternConfig.Values.member.1=/api*`.

use std::collections::BTreeMap;

use super::error::ApiError;

/// A set of Query API parameters, possibly the nested part of a larger one
/// (see [`Form::member_list`]). `path` is the parameter path this view sits
/// at, used to name parameters in error messages.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Form {
    path: String,
    pairs: Vec<(String, String)>,
}

impl Form {
    /// Parses an `application/x-www-form-urlencoded` body or query string.
    pub fn parse(encoded: &[u8]) -> Form {
        Form {
            path: String::new(),
            pairs: form_urlencoded::parse(encoded).into_owned().collect(),
        }
    }

    /// Adds the pairs of `other` (for example the query string's to the body's).
    pub fn extend(&mut self, other: Form) {
        self.pairs.extend(other.pairs);
    }

    /// The full name of the parameter `key` in this view, for messages.
    pub fn name_of(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// The value of `key`; the first one if it was given more than once.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn required(&self, key: &str) -> Result<&str, ApiError> {
        self.get(key)
            .ok_or_else(|| ApiError::missing(&self.name_of(key)))
    }

    /// An optional integer parameter.
    pub fn integer(&self, key: &str) -> Result<Option<i64>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(raw) => raw.trim().parse::<i64>().map(Some).map_err(|_| {
                ApiError::validation(format!(
                    "Value '{raw}' at '{}' is not a valid integer",
                    self.name_of(key)
                ))
            }),
        }
    }

    pub fn required_integer(&self, key: &str) -> Result<i64, ApiError> {
        self.integer(key)?
            .ok_or_else(|| ApiError::missing(&self.name_of(key)))
    }

    /// An optional boolean parameter (`true`/`false`, any case).
    pub fn boolean(&self, key: &str) -> Result<Option<bool>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(raw) if raw.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(raw) if raw.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(raw) => Err(ApiError::validation(format!(
                "Value '{raw}' at '{}' is not a valid boolean",
                self.name_of(key)
            ))),
        }
    }

    /// True when the structure or list `key` was given at all (including as an
    /// explicitly empty list, `Key=`).
    pub fn has(&self, key: &str) -> bool {
        let nested = format!("{key}.");
        self.pairs
            .iter()
            .any(|(k, _)| k == key || k.starts_with(&nested))
    }

    /// The nested structure `key` (parameters `key.Field...`), as its own view.
    pub fn structure(&self, key: &str) -> Form {
        let nested = format!("{key}.");
        Form {
            path: self.name_of(key),
            pairs: self
                .pairs
                .iter()
                .filter_map(|(k, v)| Some((k.strip_prefix(&nested)?.to_owned(), v.clone())))
                .collect(),
        }
    }

    /// The list `key` of structures (`key.member.N.Field...`), ordered by N.
    /// `None` when the list was not given; `Some(empty)` for `Key=`.
    pub fn member_list(&self, key: &str) -> Result<Option<Vec<Form>>, ApiError> {
        if !self.has(key) {
            return Ok(None);
        }
        let list = self.structure(key);
        let mut members: BTreeMap<u32, Form> = BTreeMap::new();
        for (k, v) in &list.pairs {
            let Some(rest) = k.strip_prefix("member.") else {
                return Err(ApiError::validation(format!(
                    "Malformed list parameter '{}': expected '{}.member.N'",
                    list.name_of(k),
                    list.path
                )));
            };
            let (index, field) = match rest.split_once('.') {
                Some((index, field)) => (index, Some(field)),
                None => (rest, None),
            };
            let n = index
                .parse::<u32>()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| {
                    ApiError::validation(format!(
                        "Malformed list index '{index}' in parameter '{}': indexes start at 1",
                        list.name_of(k)
                    ))
                })?;
            let member = members.entry(n).or_insert_with(|| Form {
                path: format!("{}.member.{n}", list.path),
                pairs: Vec::new(),
            });
            // A scalar member is stored under the empty key.
            member
                .pairs
                .push((field.unwrap_or_default().to_owned(), v.clone()));
        }
        Ok(Some(members.into_values().collect()))
    }

    /// The list `key` of strings (`key.member.N=value`), ordered by N.
    pub fn string_list(&self, key: &str) -> Result<Option<Vec<String>>, ApiError> {
        let Some(members) = self.member_list(key)? else {
            return Ok(None);
        };
        members
            .into_iter()
            .map(|member| {
                member.get("").map(str::to_owned).ok_or_else(|| {
                    ApiError::validation(format!(
                        "Malformed list parameter '{}': expected a plain value",
                        member.path
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }
}

#[cfg(test)]
mod fuzz_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn nested_lists_come_back_in_index_order() {
        let form = Form::parse(
            b"Conditions.member.2.Field=host-header&Conditions.member.1.Field=path-pattern\
              &Conditions.member.1.PathPatternConfig.Values.member.2=%2Fb\
              &Conditions.member.1.PathPatternConfig.Values.member.1=%2Fa",
        );
        let conditions = form.member_list("Conditions").unwrap().unwrap();
        assert_eq!(conditions.len(), 2);
        assert_eq!(conditions[0].get("Field"), Some("path-pattern"));
        assert_eq!(conditions[1].get("Field"), Some("host-header"));
        let values = conditions[0]
            .structure("PathPatternConfig")
            .string_list("Values")
            .unwrap()
            .unwrap();
        assert_eq!(values, ["/a", "/b"]);
    }

    #[test]
    fn an_explicitly_empty_list_is_present_and_empty() {
        let form = Form::parse(b"Conditions=");
        assert_eq!(form.member_list("Conditions").unwrap(), Some(Vec::new()));
        assert_eq!(form.member_list("Actions").unwrap(), None);
    }

    #[test]
    fn a_bad_index_is_a_validation_error_naming_the_parameter() {
        let form = Form::parse(b"RuleArns.member.zero=x");
        let err = form.string_list("RuleArns").unwrap_err();
        assert_eq!(err.code, "ValidationError");
        assert!(
            err.message.contains("RuleArns.member.zero"),
            "{}",
            err.message
        );
    }

    #[test]
    fn missing_parameters_are_named_with_their_full_path() {
        let form = Form::parse(b"Actions.member.1.Order=1");
        let actions = form.member_list("Actions").unwrap().unwrap();
        let err = actions[0].required("Type").unwrap_err();
        assert!(
            err.message.contains("'Actions.member.1.Type'"),
            "{}",
            err.message
        );
    }

    proptest! {
        #[test]
        fn arbitrary_input_never_panics(body in proptest::collection::vec(any::<u8>(), 0..200),
                                        key in "[A-Za-z.0-9]{0,30}") {
            let form = Form::parse(&body);
            let _ = form.member_list(&key);
            let _ = form.string_list(&key);
            let _ = form.integer(&key);
            let _ = form.boolean(&key);
        }

        #[test]
        fn arbitrary_member_paths_never_panic(path in "(Conditions|member|[0-9]{1,12}|Values|\\.|=|&|x){0,20}") {
            let form = Form::parse(path.as_bytes());
            if let Ok(Some(members)) = form.member_list("Conditions") {
                for member in members {
                    let _ = member.structure("Values").string_list("Values");
                    let _ = member.string_list("Values");
                }
            }
        }
    }
}
