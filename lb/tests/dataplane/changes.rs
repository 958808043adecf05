//! Zero-drop changes: revisions that add and remove members, routes and listeners never fail a
//! request; removed listeners and shutdown drain the requests in flight.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::harness::*;

fn config(
    web: std::net::SocketAddr,
    side: Option<std::net::SocketAddr>,
    members: &[&Upstream],
    extra_route: bool,
) -> String {
    let members: Vec<String> = members
        .iter()
        .map(|u| format!("{{ address = \"{}\" }}", u.addr))
        .collect();
    let mut s =
        format!("api_version = \"meridian/v1\"\n[[listeners]]\nname = \"web\"\nbind = \"{web}\"\n");
    if let Some(side) = side {
        s.push_str(&format!(
            "[[listeners]]\nname = \"side\"\nbind = \"{side}\"\n"
        ));
        s.push_str("[[routes]]\nname = \"side\"\nlistener = \"side\"\npool = \"p\"\n");
    }
    s.push_str("[[routes]]\nname = \"all\"\nlistener = \"web\"\npool = \"p\"\n");
    if extra_route {
        s.push_str("[[routes]]\nname = \"extra\"\nlistener = \"web\"\npath_prefix = \"/extra\"\npool = \"p\"\n");
    }
    s.push_str(&format!(
        "[[pools]]\nname = \"p\"\nmembers = [{}]\n",
        members.join(", ")
    ));
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_revisions_under_load_fail_no_request() {
    let ups = [
        Upstream::start("a").await,
        Upstream::start("b").await,
        Upstream::start("c").await,
    ];
    let (web_sock, web) = bound();
    let (side_sock, side) = bound();
    let mut plane = Plane::start(
        &config(web, Some(side), &[&ups[0], &ups[1]], false),
        vec![web_sock, side_sock],
    )
    .await;

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for i in 0..4 {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        clients.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let path = if i % 2 == 0 { "/x" } else { "/extra/y" };
            while !stop.load(Ordering::Relaxed) {
                match client.get(format!("http://{web}{path}")).send().await {
                    Ok(r) if r.status() == 200 => ok.fetch_add(1, Ordering::Relaxed),
                    Ok(r) => {
                        eprintln!("failed request: {}", r.status());
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                    Err(e) => {
                        eprintln!("failed request: {e}");
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }));
    }
    let sets: [&[usize]; 4] = [&[0, 1], &[1, 2], &[0, 2], &[0, 1, 2]];
    for rev in 0..100 {
        let members: Vec<&Upstream> = sets[rev % 4].iter().map(|&i| &ups[i]).collect();
        // The side listener comes and goes; the `extra` route stays (the clients use it).
        let side = (rev % 3 != 0).then_some(side);
        plane.apply(&config(web, side, &members, true)).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.expect("client task");
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!("100 revisions under load: {ok} requests succeeded, {failed} failed");
    assert_eq!(failed, 0);
    assert!(ok > 100, "the load ran: {ok} requests");
    plane.plane.shutdown().await;
}

#[tokio::test]
async fn removed_listeners_drain_and_renamed_ones_keep_accepting() {
    let up = Upstream::start("up").await;
    let (sock, web) = bound();
    let listener = |name: &str| {
        format!(
            "api_version = \"meridian/v1\"\nlisteners = [{{ name = \"{name}\", bind = \"{web}\" }}]\nroutes = [{{ name = \"r\", listener = \"{name}\", pool = \"p\" }}]\npools = [{{ name = \"p\", members = [{{ address = \"{}\" }}] }}]\n",
            up.addr
        )
    };
    let mut plane = Plane::start(&listener("web"), vec![sock]).await;
    // A keepalive client across a rename: same socket, no failed request.
    let client = reqwest::Client::new();
    assert_eq!(status(&client, &format!("http://{web}/")).await, 200);
    plane.apply(&listener("renamed")).await;
    for _ in 0..5 {
        assert_eq!(status(&client, &format!("http://{web}/")).await, 200);
        assert!(
            tokio::net::TcpStream::connect(web).await.is_ok(),
            "still accepting"
        );
    }
    // A slow request in flight when the listener is removed still gets its answer.
    let slow = tokio::spawn({
        let client = client.clone();
        async move {
            client
                .get(format!("http://{web}/slow"))
                .send()
                .await
                .map(|r| r.status().as_u16())
        }
    });
    up.wait_for(|s| s.uri == "/slow").await;
    plane.apply("api_version = \"meridian/v1\"\n").await;
    assert_eq!(slow.await.expect("task").expect("answer"), 200);
    let mut refused = false;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(web).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refused, "a removed listener stops accepting");
    plane.plane.shutdown().await;
}

#[tokio::test]
async fn shutdown_finishes_requests_in_flight_then_stops_accepting() {
    let up = Upstream::start("up").await;
    let (plane, web) = one_pool_plane("", &[up.addr]).await;
    let slow = tokio::spawn(async move {
        reqwest::get(format!("http://{web}/slow"))
            .await
            .map(|r| r.status().as_u16())
    });
    up.wait_for(|s| s.uri == "/slow").await;
    let started = std::time::Instant::now();
    plane.plane.shutdown().await;
    assert_eq!(slow.await.expect("task").expect("answer"), 200);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "drained promptly: {:?}",
        started.elapsed()
    );
    assert!(tokio::net::TcpStream::connect(web).await.is_err());
}
