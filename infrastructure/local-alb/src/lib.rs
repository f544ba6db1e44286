//! The local ALB: an Application Load Balancer on one machine.
pub mod dataplane;
pub mod model;
