//! The forum API shared by the monolith and the extracted services: data model,
//! id parsing, routing, handlers and the service runtime.

#![forbid(unsafe_code)]

pub mod connection;
pub mod dataset;
pub mod gen_data;
pub mod handlers;
pub mod id;
pub mod js_json;
pub mod records;
pub mod request_log;
pub mod router;
pub mod service;
pub mod settings;
pub mod startup;
pub mod telemetry;
#[cfg(feature = "test-support")]
pub mod test_support;

pub use dataset::Dataset;
pub use service::{MONOLITH, POSTS, Resource, Service, THREADS, USERS};
pub use settings::Settings;
pub use startup::{Application, StartupError, run};
