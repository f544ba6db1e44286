//! Sticky sessions through the load balancer's cookies: group-level
//! stickiness on a weighted forward (`AWSALBTG`), target stickiness in a
//! group (`AWSALB`), as a client with a cookie jar sees them.

use std::collections::{BTreeMap, HashMap};

use crate::common_dataplane::*;
use local_alb::model::{ActionKind, Priority, State};

/// A client that keeps the cookies it is given, as a browser does.
struct CookieClient {
    client: reqwest::Client,
    jar: BTreeMap<String, String>,
}

impl CookieClient {
    fn new() -> CookieClient {
        CookieClient {
            client: client(),
            jar: BTreeMap::new(),
        }
    }

    /// GETs `url` with the cookies kept so far; the backend that answered
    /// and the `Set-Cookie` values of the answer.
    async fn get(&mut self, url: &str) -> (String, Vec<String>) {
        let mut request = self.client.get(url);
        if !self.jar.is_empty() {
            let cookies: Vec<String> = self.jar.iter().map(|(k, v)| format!("{k}={v}")).collect();
            request = request.header("cookie", cookies.join("; "));
        }
        let response = request.send().await.expect("request through the alb");
        assert_eq!(response.status(), 200);
        let set: Vec<String> = response
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        for cookie in &set {
            let pair = cookie.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            self.jar.insert(name.to_owned(), value.to_owned());
        }
        let backend = response.headers()["x-backend"].to_str().unwrap().to_owned();
        (backend, set)
    }
}

fn sticky_forward(weights: &[(&str, u32)], seconds: u32) -> ActionKind {
    match forward_weighted(weights) {
        ActionKind::Forward {
            target_groups,
            plain,
            ..
        } => ActionKind::Forward {
            target_groups,
            plain,
            stickiness_enabled: true,
            stickiness_duration_seconds: Some(seconds),
        },
        other => other,
    }
}

fn blue_green(blue: &Backend, green: &Backend, action: ActionKind) -> State {
    StateBuilder::new()
        .target_group("blue", vec![blue.target()], health_check(30, 5))
        .target_group("green", vec![green.target()], health_check(30, 5))
        .rule(Priority::Default, vec![], action)
        .build()
}

#[tokio::test]
async fn group_stickiness_keeps_a_cookie_keeping_client_on_one_side() {
    let blue = Backend::start("blue").await;
    let green = Backend::start("green").await;
    let state = blue_green(
        &blue,
        &green,
        sticky_forward(&[("blue", 1), ("green", 1)], 600),
    );
    let alb = RunningAlb::start(&state, quick_options()).await;

    // A client with a cookie jar: all 20 answers from one side.
    let mut sticky = CookieClient::new();
    let (first, set) = sticky.get(&alb.url("/api/users")).await;
    assert!(
        set.iter()
            .any(|c| c.starts_with("AWSALBTG=") && c.contains("Expires=") && c.contains("Path=/")),
        "{set:?}"
    );
    assert!(
        set.iter()
            .any(|c| c.starts_with("AWSALBTGCORS=") && c.contains("SameSite=None")),
        "{set:?}"
    );
    for _ in 1..20 {
        assert_eq!(sticky.get(&alb.url("/api/users")).await.0, first);
    }

    // Without cookies, both sides, by weight.
    let mut seen: HashMap<String, usize> = HashMap::new();
    let plain = client();
    for _ in 0..20 {
        *seen
            .entry(backend_of(&plain, &alb.url("/api/users")).await.1)
            .or_default() += 1;
    }
    assert_eq!(seen.len(), 2, "{seen:?}");

    // The value is opaque: a client that alters it cannot pick a side, it
    // is routed by weight again.
    let value = sticky.jar["AWSALBTG"].clone();
    let mut forged = value.into_bytes();
    forged[30] = if forged[30] == b'0' { b'1' } else { b'0' };
    let forged = String::from_utf8(forged).unwrap();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for _ in 0..20 {
        let response = plain
            .get(alb.url("/api/users"))
            .header("cookie", format!("AWSALBTG={forged}"))
            .send()
            .await
            .unwrap();
        let backend = response.headers()["x-backend"].to_str().unwrap().to_owned();
        *seen.entry(backend).or_default() += 1;
    }
    assert_eq!(seen.len(), 2, "a forged cookie must not hold: {seen:?}");

    // HTTP/2 clients get the same cookies.
    let h2 = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let response = h2.get(alb.url("/api/users")).send().await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.headers().get_all("set-cookie").iter().count(), 2);
    alb.stop().await;
}

/// As on AWS, stickiness wins over weights: a sticky client of a group set
/// to weight 0 stays there until its cookie expires, while new clients go
/// by weight. A forward that no longer lists the group, or one without
/// stickiness, sends it by weight at its next request.
#[tokio::test]
async fn sticky_clients_stay_on_a_group_set_to_weight_zero_and_leave_when_the_rule_drops_it() {
    let blue = Backend::start("blue").await;
    let green = Backend::start("green").await;
    let state = blue_green(
        &blue,
        &green,
        sticky_forward(&[("blue", 1), ("green", 1)], 600),
    );
    let alb = RunningAlb::start(&state, quick_options()).await;
    let mut on_green = CookieClient::new();
    while on_green.get(&alb.url("/")).await.0 != "green" {
        on_green = CookieClient::new();
    }

    alb.plane.publish(&blue_green(
        &blue,
        &green,
        sticky_forward(&[("blue", 1), ("green", 0)], 600),
    ));
    for _ in 0..5 {
        assert_eq!(on_green.get(&alb.url("/")).await.0, "green");
        assert_eq!(CookieClient::new().get(&alb.url("/")).await.0, "blue");
    }

    alb.plane.publish(&blue_green(
        &blue,
        &green,
        forward_weighted(&[("blue", 1), ("green", 0)]),
    ));
    assert_eq!(on_green.get(&alb.url("/")).await.0, "blue");
    alb.stop().await;
}

#[tokio::test]
async fn target_stickiness_keeps_a_client_on_one_target_of_a_group() {
    let first = Backend::start("first").await;
    let second = Backend::start("second").await;
    let mut state = StateBuilder::new()
        .target_group(
            "pair",
            vec![first.target(), second.target()],
            health_check(30, 5),
        )
        .rule(Priority::Default, vec![], forward("pair"))
        .build();
    state.target_groups[0].attributes.stickiness_enabled = true;
    state.target_groups[0]
        .attributes
        .stickiness_duration_seconds = 60;
    let alb = RunningAlb::start(&state, quick_options()).await;

    let mut sticky = CookieClient::new();
    let (target, set) = sticky.get(&alb.url("/")).await;
    assert!(set.iter().any(|c| c.starts_with("AWSALB=")), "{set:?}");
    assert!(set.iter().any(|c| c.starts_with("AWSALBCORS=")), "{set:?}");
    assert!(
        !set.iter().any(|c| c.starts_with("AWSALBTG")),
        "no group cookie: {set:?}"
    );
    for _ in 0..10 {
        assert_eq!(sticky.get(&alb.url("/")).await.0, target);
    }
    let plain = client();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for _ in 0..10 {
        *seen
            .entry(backend_of(&plain, &alb.url("/")).await.1)
            .or_default() += 1;
    }
    assert_eq!(seen.len(), 2, "round robin without the cookie: {seen:?}");
    alb.stop().await;
}
