//! Which request and response header fields a load balancer never passes on.

/// The hop-by-hop fields of RFC 9110 §7.6.1 (`Connection`, `Proxy-Connection`,
/// `Keep-Alive`, `TE`, `Transfer-Encoding`, `Upgrade`), lowercase. `Trailer`
/// is not among them: it is end-to-end (RFC 9110 §6.6.2; only RFC 2616 listed
/// it), so it is passed on with the trailers it announces.
pub const HOP_BY_HOP: [&str; 6] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "transfer-encoding",
    "upgrade",
];

/// Whether `name` (any case) is a hop-by-hop field, never forwarded. Fields
/// that a `Connection` header lists are hop-by-hop too; the caller checks
/// those.
pub fn is_hop_by_hop(name: &str) -> bool {
    // Most header names are longer than any of these: one length check each.
    name.len() <= "transfer-encoding".len()
        && HOP_BY_HOP.iter().any(|h| h.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_9110_hop_by_hop_fields() {
        for name in [
            "Connection",
            "keep-alive",
            "TE",
            "Transfer-Encoding",
            "upgrade",
            "Proxy-Connection",
        ] {
            assert!(is_hop_by_hop(name), "{name}");
        }
        for name in ["Trailer", "Host", "X-Forwarded-For", "Content-Length", "t"] {
            assert!(!is_hop_by_hop(name), "{name}");
        }
    }
}
