//! The async client library against a real directory process.

mod common;

use common::*;
use herald_server::client::{registration, ClientOptions, Error, EventKind, Herald, Watch};
use herald_server::net::Interface;
use std::time::{Duration, Instant};
use tokio_stream::StreamExt;

fn options(net: &Net, directories: Vec<std::net::SocketAddr>) -> ClientOptions {
    ClientOptions {
        directories,
        group: net.group,
        interface: Interface::default(),
        ..ClientOptions::default()
    }
}

async fn next(watch: &mut Watch) -> herald_server::client::WatchEvent {
    tokio::time::timeout(Duration::from_secs(5), watch.next())
        .await
        .expect("an event within 5 s")
        .expect("the stream goes on")
}

#[tokio::test]
async fn register_watch_and_release_on_drop() {
    let net = Net::new();
    let data = tempfile::tempdir().unwrap();
    let _dir = directory(&net, data.path(), &[]);
    let opts = options(&net, vec![net.directory]);
    let mut watch = Watch::start(opts.clone(), Default::default())
        .await
        .unwrap();
    let herald = Herald::connect(opts.clone()).await.unwrap();
    let reg = registration(
        "cache",
        &["127.0.0.1:6379".parse().unwrap()],
        &[("role".into(), "primary".into())],
    )
    .unwrap();
    let handle = herald.register(reg).await.unwrap();
    assert_eq!(handle.grant().directory, net.directory);
    assert_eq!(handle.grant().lease, Duration::from_secs(15));
    let event = next(&mut watch).await;
    assert_eq!(event.kind, EventKind::Discovered);
    assert_eq!(event.service.name, "cache");
    assert_eq!(event.service.meta["role"], "primary");
    let list = herald.list().await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].locations, ["127.0.0.1:6379".parse().unwrap()]);
    // Dropping every handle releases the registration.
    drop(handle);
    drop(herald);
    let event = next(&mut watch).await;
    assert_eq!(event.kind, EventKind::Unregistered);
    assert_eq!(event.service.name, "cache");
}

#[tokio::test]
async fn a_client_fails_over_to_the_next_directory() {
    let net = Net::new();
    let data = tempfile::tempdir().unwrap();
    let _dir = directory(&net, data.path(), &[]);
    let dead = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let herald = Herald::connect(options(&net, vec![dead, net.directory]))
        .await
        .unwrap();
    let start = Instant::now();
    let reg = registration("api", &["127.0.0.1:8000".parse().unwrap()], &[]).unwrap();
    let handle = herald.register(reg).await.unwrap();
    println!(
        "registered through the second directory after {:?}",
        start.elapsed()
    );
    assert_eq!(handle.grant().directory, net.directory);
    handle.unregister().await.unwrap();
    let list = herald.list().await.unwrap();
    assert!(list.is_empty(), "{list:?}");
}

#[tokio::test]
async fn errors_are_typed() {
    let net = Net::new();
    let data = tempfile::tempdir().unwrap();
    let _dir = directory(&net, data.path(), &["--environment", "prod"]);
    let mut opts = options(&net, vec![net.directory]);
    opts.environment = "dev".into();
    let herald = Herald::connect(opts.clone()).await.unwrap();
    let reg = registration("api", &["127.0.0.1:8000".parse().unwrap()], &[]).unwrap();
    match herald.register(reg.clone()).await {
        Err(Error::WrongEnvironment { ours, theirs }) => {
            assert_eq!((ours.as_str(), theirs.as_str()), ("dev", "prod"));
        }
        other => panic!("{other:?}"),
    }
    opts.environment = "prod".into();
    opts.registrant = Some(1);
    let first = Herald::connect(opts.clone()).await.unwrap();
    let _held = first.register(reg.clone()).await.unwrap();
    opts.registrant = Some(2);
    let second = Herald::connect(opts.clone()).await.unwrap();
    match second.register(reg).await {
        Err(Error::Rejected { reason }) => assert_eq!(reason.label(), "name_held"),
        other => panic!("{other:?}"),
    }
    opts.environment = "not valid".into();
    assert!(matches!(
        Herald::connect(opts).await,
        Err(Error::InvalidEnvironment { .. })
    ));
}

/// A directory that stops answering for a while (a slow disk under its durable write,
/// a paused process) and then answers is waited for as long as the call's timeout says:
/// the call does not fail when every directory has gone unanswered a few times. It
/// did, after about a second whatever the timeout, with an error that named the
/// timeout (the HTTP API's writes answered 504 while their directory fsynced).
#[tokio::test]
async fn a_call_waits_its_whole_timeout_for_a_slow_directory() {
    let net = Net::new();
    let data = tempfile::tempdir().unwrap();
    let dir = directory(&net, data.path(), &[]);
    let opts = ClientOptions {
        timeout: Duration::from_secs(8),
        ..options(&net, vec![net.directory])
    };
    let herald = Herald::connect(opts).await.unwrap();
    let reg = registration("slow", &["127.0.0.1:8000".parse().unwrap()], &[]).unwrap();
    dir.signal("STOP");
    let start = Instant::now();
    let call = tokio::spawn(async move {
        let result = herald.register(reg).await.map(|h| h.grant().clone());
        (result, herald)
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    dir.signal("CONT");
    let (result, _herald) = call.await.unwrap();
    let grant = result.expect("registered once the directory answered");
    assert_eq!(grant.directory, net.directory);
    println!("registered after {:?}", start.elapsed());
    assert!(start.elapsed() >= Duration::from_secs(2));
}
