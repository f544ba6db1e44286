//! The integration tests of `local-alb`, in one test binary (one link, one
//! process): each former `tests/*.rs` file is a module here, and the shared
//! helpers are modules beside them.

mod access_log;
mod attributes;
mod cloudwatch;
mod common;
mod common_dataplane;
mod control_cli;
mod control_health;
mod control_routing;
mod control_sdk;
mod control_startup;
mod control_wire;
mod dataplane_forum;
mod dataplane_health;
mod dataplane_http1;
mod dataplane_limits;
mod dataplane_routing;
mod dataplane_sticky;
mod faults;
mod persist;
