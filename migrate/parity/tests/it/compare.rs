//! Structural comparison of two responses, without a network.

use parity::{Comparator, Difference, Kind, Location, Response, Suppression, VerifySpec};

fn json(body: &str) -> Response {
    Response::new(
        200,
        [("Content-Type", "application/json; charset=utf-8")],
        body.to_owned(),
    )
}

fn text(status: u16, body: &str) -> Response {
    Response::new(
        status,
        [("Content-Type", "text/plain; charset=utf-8")],
        body.to_owned(),
    )
}

fn counted(differences: &[Difference]) -> Vec<(String, Kind)> {
    differences
        .iter()
        .filter(|difference| difference.suppressed.is_none())
        .map(|difference| (difference.location.to_string(), difference.kind))
        .collect()
}

fn compare(baseline: &Response, candidate: &Response) -> Vec<(String, Kind)> {
    counted(&Comparator::default().compare(baseline, candidate))
}

fn with_spec(toml_text: &str) -> Comparator {
    Comparator::new(&toml::from_str::<VerifySpec>(toml_text).expect("valid spec"))
        .expect("valid comparator")
}

#[test]
fn equal_answers_have_no_differences() {
    let answer = json(r#"{"id":1,"tags":["a","b"]}"#);
    assert!(
        Comparator::default()
            .compare(&answer, &answer.clone())
            .is_empty()
    );
}

#[test]
fn each_kind_is_reported_at_its_pointer() {
    let baseline = json(r#"{"id":1,"name":"a","tags":["x","y"],"meta":{"n":1},"gone":true}"#);
    let candidate = json(r#"{"id":"1","name":"b","tags":["x"],"meta":{"n":1},"new":null}"#);
    assert_eq!(
        compare(&baseline, &candidate),
        vec![
            ("body /id".to_owned(), Kind::ChangedType),
            ("body /name".to_owned(), Kind::ChangedValue),
            ("body /tags".to_owned(), Kind::ArrayLength),
            ("body /gone".to_owned(), Kind::Missing),
            ("body /new".to_owned(), Kind::Extra),
        ]
    );
}

#[test]
fn pointers_escape_tilde_and_slash_and_keep_array_indexes() {
    let baseline = json(r#"{"a/b":[{"c~d":1},{"c~d":2}]}"#);
    let candidate = json(r#"{"a/b":[{"c~d":1},{"c~d":3}]}"#);
    assert_eq!(
        compare(&baseline, &candidate),
        vec![("body /a~1b/1/c~0d".to_owned(), Kind::ChangedValue)]
    );
    let differences = Comparator::default().compare(&baseline, &candidate);
    assert_eq!(
        differences[0].location,
        Location::Body(vec!["a/b".into(), "1".into(), "c~d".into()])
    );
    assert_eq!(
        (
            differences[0].baseline.as_str(),
            differences[0].candidate.as_str()
        ),
        ("2", "3")
    );
}

#[test]
fn ignore_patterns_with_a_star_match_any_index_and_everything_below() {
    let comparator = with_spec(r#"ignore = ["/items/*/at", "/meta"]"#);
    let baseline = json(r#"{"items":[{"at":1,"v":1},{"at":2,"v":2}],"meta":{"x":{"y":1}}}"#);
    let candidate = json(r#"{"items":[{"at":5,"v":1},{"at":6,"v":3}],"meta":{"x":{"y":2}}}"#);
    let differences = comparator.compare(&baseline, &candidate);
    assert_eq!(
        counted(&differences),
        vec![("body /items/1/v".to_owned(), Kind::ChangedValue)]
    );
    let reasons: Vec<String> = differences
        .iter()
        .filter_map(|difference| difference.suppressed.as_ref().map(ToString::to_string))
        .collect();
    assert_eq!(
        reasons,
        vec![
            "ignored by pointer /items/*/at",
            "ignored by pointer /items/*/at",
            "ignored by pointer /meta"
        ]
    );
}

#[test]
fn unordered_arrays_report_what_is_missing_or_extra_not_the_order() {
    let comparator = with_spec(r#"unordered = ["/*/tags"]"#);
    let baseline = json(r#"[{"tags":["a","b","c"]}]"#);
    let same_elements = json(r#"[{"tags":["c","a","b"]}]"#);
    let differences = comparator.compare(&baseline, &same_elements);
    assert!(counted(&differences).is_empty());
    assert_eq!(
        differences[0].suppressed,
        Some(Suppression::Unordered("/*/tags".into()))
    );

    let one_replaced = json(r#"[{"tags":["c","a","z","q"]}]"#);
    assert_eq!(
        counted(&comparator.compare(&baseline, &one_replaced)),
        vec![
            ("body /0/tags/1".to_owned(), Kind::ChangedValue),
            ("body /0/tags/3".to_owned(), Kind::Extra),
        ]
    );
}

#[test]
fn object_key_order_and_json_formatting_are_differences() {
    let baseline = json(r#"{"id":1,"name":"a"}"#);
    assert_eq!(
        compare(&baseline, &json(r#"{"name":"a","id":1}"#)),
        vec![("body".to_owned(), Kind::Order)]
    );
    assert_eq!(
        compare(&baseline, &json(r#"{"id": 1, "name": "a"}"#)),
        vec![("body".to_owned(), Kind::Formatting)]
    );
}

#[test]
fn no_content_against_not_found_differs_in_status_content_type_and_body() {
    let no_content = Response::new(204, [], "");
    let not_found = text(404, "Not Found");
    assert_eq!(
        compare(&no_content, &not_found),
        vec![
            ("status".to_owned(), Kind::ChangedValue),
            ("header content-type".to_owned(), Kind::Extra),
            ("body".to_owned(), Kind::Extra),
        ]
    );
    assert_eq!(
        compare(&not_found, &no_content)[2],
        ("body".to_owned(), Kind::Missing)
    );
}

#[test]
fn text_bodies_get_a_short_line_diff() {
    let differences = Comparator::default().compare(
        &text(200, "one\ntwo\nthree"),
        &text(200, "one\n2\nthree\nfour"),
    );
    assert_eq!(
        counted(&differences),
        vec![("body".to_owned(), Kind::ChangedValue)]
    );
    assert_eq!(
        differences[0].baseline,
        "line 2: \"two\" (+1 more differing lines)"
    );
    assert_eq!(
        differences[0].candidate,
        "line 2: \"2\" (+1 more differing lines)"
    );
}

#[test]
fn a_json_body_against_a_text_body_is_a_changed_type() {
    let differences = Comparator::default().compare(&json("[]"), &text(200, "[]x"));
    assert!(counted(&differences).contains(&("body".to_owned(), Kind::ChangedType)));
}

#[test]
fn default_ignored_headers_are_suppressed_unless_asked_for() {
    let baseline = Response::new(
        200,
        [
            ("Date", "Mon, 01 Jan 2026 00:00:00 GMT"),
            ("Allow", "HEAD, GET"),
        ],
        "",
    );
    let candidate = Response::new(
        200,
        [
            ("Date", "Mon, 01 Jan 2026 00:00:01 GMT"),
            ("Allow", "GET, HEAD"),
        ],
        "",
    );
    let differences = Comparator::default().compare(&baseline, &candidate);
    assert_eq!(
        counted(&differences),
        vec![("header allow".to_owned(), Kind::ChangedValue)]
    );
    assert_eq!(differences[1].suppressed, Some(Suppression::IgnoredHeader));
    let strict = with_spec("compare_default_ignored_headers = true");
    assert_eq!(counted(&strict.compare(&baseline, &candidate)).len(), 2);
}

#[test]
fn a_bad_pointer_in_the_spec_is_a_clear_error() {
    let error = Comparator::new(&toml::from_str::<VerifySpec>(r#"ignore = ["name"]"#).unwrap())
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "ignore: JSON Pointer \"name\" must be empty (the whole body) or start with '/', like \"/0/name\""
    );
    let error = Comparator::new(&toml::from_str::<VerifySpec>(r#"unordered = ["/a~2"]"#).unwrap())
        .unwrap_err();
    assert!(error.to_string().contains("write '~' as \"~0\""), "{error}");
}

fn with_header(name: &'static str, value: &'static str) -> Response {
    Response::new(200, [(name, value)], "same body".to_owned())
}

#[test]
fn media_types_compare_as_media_types() {
    // RFC 9110 §8.3.1: type, subtype and parameter names are case-insensitive,
    // so is the charset value, and a quoted value equals the same token.
    let baseline = with_header("Content-Type", "application/json; charset=utf-8");
    for same in [
        "application/json; charset=UTF-8",
        "Application/JSON;Charset=\"utf-8\"",
        "application/json ;  charset=utf-8",
        " application/json; charset=utf-8\t",
    ] {
        let candidate = with_header("Content-Type", same);
        assert_eq!(compare(&baseline, &candidate), vec![], "{same}");
    }
    for other in [
        "text/json; charset=utf-8",
        "application/json",
        "application/json; charset=latin1",
        "application/json; charset=utf-8; profile=a",
    ] {
        let candidate = with_header("Content-Type", other);
        assert_eq!(
            compare(&baseline, &candidate),
            vec![("header content-type".to_owned(), Kind::ChangedValue)],
            "{other}"
        );
    }
    // Other parameter values keep their case.
    assert_eq!(
        compare(
            &with_header("Content-Type", "multipart/mixed; boundary=Abc"),
            &with_header("Content-Type", "multipart/mixed; boundary=abc")
        ),
        vec![("header content-type".to_owned(), Kind::ChangedValue)]
    );
}

#[test]
fn header_values_follow_the_white_space_rules_of_rfc_9110() {
    // §5.5: leading and trailing white space is not part of a field value;
    // §5.6.1: list elements are separated by commas with optional white space.
    let allow = with_header("Allow", "HEAD, GET");
    assert_eq!(compare(&allow, &with_header("Allow", "HEAD,GET")), vec![]);
    assert_eq!(
        compare(&allow, &with_header("Allow", " HEAD ,\tGET ")),
        vec![]
    );
    assert_eq!(
        compare(&allow, &with_header("Allow", "GET, HEAD")),
        vec![("header allow".to_owned(), Kind::ChangedValue)],
        "element order still counts"
    );
    let etag = with_header("ETag", "\"a, b\"");
    assert_eq!(compare(&etag, &with_header("ETag", " \"a, b\" ")), vec![]);
    assert_eq!(
        compare(&etag, &with_header("ETag", "\"a,b\"")),
        vec![("header etag".to_owned(), Kind::ChangedValue)],
        "white space inside a value that is not a list counts"
    );
}

#[test]
fn a_permuted_array_is_one_order_finding_and_json_key_order_can_be_ignored() {
    let baseline = json(r#"{"items":[{"id":1},{"id":2},{"id":3}]}"#);
    let reversed = json(r#"{"items":[{"id":3},{"id":2},{"id":1}]}"#);
    assert_eq!(
        compare(&baseline, &reversed),
        vec![("body /items".to_owned(), Kind::Order)]
    );
    let keys = json(r#"{"b":1,"a":2}"#);
    let swapped = json(r#"{"a":2,"b":1}"#);
    assert_eq!(
        compare(&keys, &swapped),
        vec![("body".to_owned(), Kind::Order)],
        "strict by default"
    );
    let ignoring = with_spec("json_key_order = \"ignore\"");
    let differences = ignoring.compare(&keys, &swapped);
    assert_eq!(counted(&differences), vec![]);
    assert_eq!(differences[0].suppressed, Some(Suppression::KeyOrder));
    // A changed value is still one.
    assert_eq!(
        counted(&ignoring.compare(&keys, &json(r#"{"a":3,"b":1}"#))),
        vec![("body /a".to_owned(), Kind::ChangedValue)]
    );
    let error = toml::from_str::<VerifySpec>("json_key_order = \"loose\"").unwrap_err();
    assert!(error.to_string().contains("strict"), "{error}");
}
