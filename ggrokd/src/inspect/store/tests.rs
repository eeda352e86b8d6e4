//! Tests of `store`.

use super::*;

fn arrival<'a>(headers: &'a HeaderMap, path: &'a str) -> Arrival<'a> {
    Arrival {
        host: "a.test",
        tunnel: "a.test",
        method: "POST",
        path,
        headers,
        client: None,
        upgrade: None,
        replay_of: None,
    }
}

#[test]
fn bodies_are_kept_up_to_the_limit_and_counted_whole() {
    let store = Store::new(Limits { body: 10, memory: 1 << 20, count: 10 });
    let headers = HeaderMap::new();
    let entry = store.begin(&arrival(&headers, "/"));
    entry.tap(Side::Request, b"0123456");
    entry.tap(Side::Request, b"789abcdef");
    let live = entry.live.lock().unwrap().clone();
    assert_eq!((&live.request_body.data[..], live.request_body.size), (&b"0123456789"[..], 16));
    assert!(live.request_body.truncated);
    assert!(!live.response_body.truncated);
}

#[test]
fn the_oldest_go_first_when_memory_runs_out() {
    let store = Store::new(Limits { body: 4096, memory: 3 * (4096 + ENTRY_OVERHEAD + 200), count: 100 });
    let headers = HeaderMap::new();
    for i in 0..10 {
        let entry = store.begin(&arrival(&headers, &format!("/{i}")));
        entry.tap(Side::Response, &[7u8; 4096]);
        store.evict();
    }
    let (kept, dropped) = store.all();
    assert!(kept.len() <= 3 && !kept.is_empty(), "{}", kept.len());
    assert_eq!(kept.last().unwrap().path, "/9", "the newest stays");
    assert_eq!(dropped as usize + kept.len(), 10);
    assert!(store.used() <= store.limits().memory);
    assert!(store.get(1).is_none() && store.get(10).is_some());
    store.clear();
    assert_eq!((store.all().0.len(), store.used()), (0, 0));
}

#[test]
fn headers_are_kept_as_text_and_split_on_demand() {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", "application/json".parse().unwrap());
    headers.append("x-a", "1: two".parse().unwrap());
    headers.append("x-a", "3".parse().unwrap());
    let text = HeaderText::new(&headers, Some("a.test"));
    let pairs = text.pairs();
    let want = [("host", "a.test"), ("content-type", "application/json"), ("x-a", "1: two"), ("x-a", "3")];
    assert_eq!(pairs.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect::<Vec<_>>(), want);
    assert_eq!(text.get("Content-Type"), Some("application/json"));
    headers.insert("host", "b.test".parse().unwrap());
    assert_eq!(HeaderText::new(&headers, Some("a.test")).get("host"), Some("b.test"), "a Host of its own");
}

#[test]
fn at_most_count_requests_are_kept() {
    let store = Store::new(Limits { body: 16, memory: 1 << 30, count: 5 });
    let headers = HeaderMap::new();
    for i in 0..12 {
        store.begin(&arrival(&headers, &format!("/{i}")));
    }
    let (kept, dropped) = store.all();
    assert_eq!((kept.len(), dropped), (5, 7));
    assert_eq!(kept[0].path, "/7");
}
