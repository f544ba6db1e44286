//! Response parity between a baseline (the monolith) and a candidate (a service).
//!
//! A run takes requests from a route's [`VerifySpec`] (templates over values,
//! corpus files) and from ALB access logs ([`RequestSet`]), sends each to the
//! baseline twice and to the candidate once ([`run()`]), compares the answers
//! structurally ([`Comparator`]), cancels the noise the two baseline answers
//! show, and reports by endpoint template and JSON Pointer ([`RouteReport`]).

#![forbid(unsafe_code)]

mod compare;
mod error;
pub mod pointer;
mod recording;
mod report;
mod request;
mod run;
mod spec;

pub use compare::{
    Comparator, DEFAULT_IGNORED_HEADERS, Difference, Kind, Location, Response, Suppression,
};
pub use error::Error;
pub use recording::{
    RECORDING_FORMAT, RECORDING_VERSION, RecordedAnswer, RecordedAnswers, RecordedExchange,
    Recording, RouteRecording,
};
pub use report::{
    DifferenceGroup, EXAMPLES_PER_GROUP, EndpointReport, Example, FIRST_DIFFERENCE_CHARS,
    FailureGroup, RouteReport, SUMMARY_BYTES, SkippedRoute, TEXT_REPORT_LINES, json, junit_xml,
    markdown_summary,
};
pub use request::{
    AlbLog, Request, RequestSet, SKIPPED_LINE_CHARS, Skipped, SourceSummary, infer_template,
    matches_path_pattern, parse_alb_log_line, split_alb_log_fields,
};
pub use run::{
    DEFAULT_CONCURRENCY, DEFAULT_TIMEOUT, Exchange, Outcome, Run, RunOptions, Side, Sides, record,
    run, run_observed, run_recorded,
};
pub use spec::{KeyOrder, TemplateValue, VerifySpec};
