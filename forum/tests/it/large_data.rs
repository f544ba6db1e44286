//! Generated data far larger than the seed: the indexes answer exactly what a
//! linear scan of the file finds.

use std::collections::BTreeMap;
use std::io::Write;

use forum::Dataset;
use forum::gen_data::{Volume, write_dataset};
use forum::test_support::{send, start_in_process, test_settings};
use serde_json::Value;

const VOLUME: Volume = Volume {
    users: 3000,
    threads: 800,
    posts: 200_000,
    seed: 42,
};

/// The posts of each thread and of each user, found by scanning the file.
fn scan(text: &str) -> (BTreeMap<i64, Vec<String>>, BTreeMap<i64, Vec<String>>) {
    let file: Value = serde_json::from_str(text).unwrap();
    let mut by_thread: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    let mut by_user: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for post in file["posts"].as_array().unwrap() {
        let json = serde_json::to_string(post).unwrap();
        by_thread
            .entry(post["thread"].as_i64().unwrap())
            .or_default()
            .push(json.clone());
        by_user
            .entry(post["user"].as_i64().unwrap())
            .or_default()
            .push(json);
    }
    (by_thread, by_user)
}

fn array(records: Option<&Vec<String>>) -> String {
    format!("[{}]", records.map(|r| r.join(",")).unwrap_or_default())
}

#[test]
fn indexes_over_200k_posts_match_a_linear_scan() {
    let mut text = Vec::new();
    write_dataset(&mut text, VOLUME).unwrap();
    let text = String::from_utf8(text).unwrap();
    let data = Dataset::from_json(&text, "generated").unwrap();
    assert_eq!(data.post_count(), 200_000);
    let (by_thread, by_user) = scan(&text);
    assert!(
        by_thread.len() > 700,
        "fan-out covers most threads: {}",
        by_thread.len()
    );
    let busiest = by_thread.values().map(Vec::len).max().unwrap();
    assert!(
        busiest > 2000,
        "fan-out is skewed: busiest thread has {busiest} posts"
    );
    for thread in by_thread.keys().copied().chain([0, 801, -1]) {
        let want = array(by_thread.get(&thread));
        assert_eq!(
            data.posts_in_thread_json(Some(thread)),
            want.as_bytes(),
            "thread {thread}"
        );
    }
    for user in by_user.keys().copied().chain([0, 3001]) {
        let want = array(by_user.get(&user));
        assert_eq!(
            data.posts_by_user_json(Some(user)),
            want.as_bytes(),
            "user {user}"
        );
    }

    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(text.as_bytes()).unwrap();
    let mut settings = test_settings();
    settings.data = Some(file.path().to_owned());
    let address = start_in_process(forum::POSTS, settings).unwrap();
    let all_posts =
        serde_json::to_string(&serde_json::from_str::<Value>(&text).unwrap()["posts"]).unwrap();
    let head = send(address, "HEAD", "/api/posts").unwrap();
    assert_eq!(
        head.header("content-length"),
        Some(all_posts.len().to_string().as_str()),
        "the whole list is written while sent, with its length known"
    );
    for (target, want) in [
        ("/api/posts", all_posts.clone()),
        ("/api/posts/in-thread/7", array(by_thread.get(&7))),
        ("/api/posts/in-thread/1", array(by_thread.get(&1))),
        ("/api/posts/by-user/%2B12", array(by_user.get(&12))),
    ] {
        let response = send(address, "GET", target).unwrap();
        assert_eq!((response.status, response.text()), (200, want), "{target}");
    }
}
