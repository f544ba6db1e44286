//! Writing the AWS Query protocol's XML documents.

use std::fmt::{Display, Write};

use super::error::ApiError;

/// The ELBv2 XML namespace.
pub const NAMESPACE: &str = "http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/";

/// A small XML writer: elements and escaped text, nothing else.
#[derive(Debug, Default)]
pub struct Xml {
    out: String,
}

impl Xml {
    /// `<name>text</name>`, the text escaped.
    pub fn leaf(&mut self, name: &str, text: impl Display) -> &mut Self {
        let _ = write!(self.out, "<{name}>");
        let text = text.to_string();
        escape_into(&mut self.out, &text);
        let _ = write!(self.out, "</{name}>");
        self
    }

    /// `<name>text</name>` when `text` is present, nothing otherwise.
    pub fn optional_leaf(&mut self, name: &str, text: Option<impl Display>) -> &mut Self {
        if let Some(text) = text {
            self.leaf(name, text);
        }
        self
    }

    /// `<name>...</name>` with the content `body` writes.
    pub fn node(&mut self, name: &str, body: impl FnOnce(&mut Xml)) -> &mut Self {
        let _ = write!(self.out, "<{name}>");
        body(self);
        let _ = write!(self.out, "</{name}>");
        self
    }

    /// `<name><member>...</member>...</name>`, one member per item.
    pub fn list<T>(
        &mut self,
        name: &str,
        items: impl IntoIterator<Item = T>,
        mut member: impl FnMut(&mut Xml, T),
    ) -> &mut Self {
        self.node(name, |x| {
            for item in items {
                x.node("member", |x| member(x, item));
            }
        })
    }

    /// `<name><member>text</member>...</name>`.
    pub fn string_list<T: Display>(
        &mut self,
        name: &str,
        items: impl IntoIterator<Item = T>,
    ) -> &mut Self {
        self.list(name, items, |x, item| {
            let text = item.to_string();
            escape_into(&mut x.out, &text);
        })
    }
}

fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
}

/// A successful response: `<{action}Response><{action}Result>...` then the
/// request id.
pub fn success(action: &str, request_id: &str, result: impl FnOnce(&mut Xml)) -> String {
    success_in(NAMESPACE, action, request_id, result)
}

/// [`success`] in another service's XML `namespace`.
pub fn success_in(
    namespace: &str,
    action: &str,
    request_id: &str,
    result: impl FnOnce(&mut Xml),
) -> String {
    let mut x = Xml::default();
    let _ = write!(x.out, r#"<{action}Response xmlns="{namespace}">"#);
    x.node(&format!("{action}Result"), result);
    x.node("ResponseMetadata", |x| {
        x.leaf("RequestId", request_id);
    });
    let _ = write!(x.out, "</{action}Response>");
    x.out
}

/// An error document: `<ErrorResponse><Error>...</Error><RequestId>`.
pub fn error(error: &ApiError, request_id: &str) -> String {
    error_in(
        NAMESPACE,
        [error.fault_type(), error.code, &error.message],
        request_id,
    )
}

/// An error document in another service's XML `namespace`; `[type, code,
/// message]`.
pub fn error_in(namespace: &str, [fault, code, message]: [&str; 3], request_id: &str) -> String {
    let mut x = Xml::default();
    let _ = write!(x.out, r#"<ErrorResponse xmlns="{namespace}">"#);
    x.node("Error", |x| {
        x.leaf("Type", fault)
            .leaf("Code", code)
            .leaf("Message", message);
    });
    x.leaf("RequestId", request_id);
    x.out.push_str("</ErrorResponse>");
    x.out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_documents_put_the_result_first_and_escape_text() {
        let body = success("DescribeTags", "rid-1", |x| {
            x.string_list("Keys", ["a<b", "c&d"]);
        });
        assert_eq!(
            body,
            format!(
                r#"<DescribeTagsResponse xmlns="{NAMESPACE}"><DescribeTagsResult><Keys><member>a&lt;b</member><member>c&amp;d</member></Keys></DescribeTagsResult><ResponseMetadata><RequestId>rid-1</RequestId></ResponseMetadata></DescribeTagsResponse>"#
            )
        );
    }

    #[test]
    fn error_documents_carry_type_code_message_and_request_id() {
        let body = error(&ApiError::rule_not_found("arn:x"), "rid-2");
        assert!(body.contains("<Error><Type>Sender</Type><Code>RuleNotFound</Code><Message>One or more rules not found: &apos;arn:x&apos;</Message></Error><RequestId>rid-2</RequestId>"), "{body}");
    }
}
