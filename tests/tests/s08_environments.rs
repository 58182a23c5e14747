//! Scenario 8: environment isolation. Two environments announce on the same group;
//! neither sees the other's services; a request to the wrong environment gets an
//! explicit rejection that names the environment.

use herald_tests::harness::herald::{count, register, run, Connect};
use herald_tests::harness::host::Host;
use herald_tests::harness::ports::unique_group;
use herald_tests::{Directory, DirectoryOptions, Watcher};
use std::time::Duration;

const T: Duration = Duration::from_secs(10);
const BLUE: &str = "blue";
const GREEN: &str = "green";

#[test]
fn environments_on_one_group_stay_apart() {
    let host = Host::loopback("lo");
    let group = unique_group();
    let options = |env: &str| DirectoryOptions {
        group,
        ..DirectoryOptions::new(env).with_metrics()
    };
    let blue = Directory::start(&host, "blue directory", options(BLUE));
    let green = Directory::start(&host, "green directory", options(GREEN));
    let (cb, cg) = (blue.connect(), green.connect());
    let wb = Watcher::start(&host, "blue watcher", &cb, &[]);
    let wg = Watcher::start(&host, "green watcher", &cg, &[]);
    // A green listener pointed at the blue directory: it must learn nothing from it.
    let stray = Watcher::start(
        &host,
        "green watcher of the blue directory",
        &Connect {
            directories: vec![blue.addr()],
            environment: GREEN.into(),
            group,
        },
        &[],
    );
    wb.wait_ready(T);
    wg.wait_ready(T);

    let _b = register(&host, &cb, "billing", &[host.addr(7001)], &[]);
    let _g = register(&host, &cg, "gateway", &[host.addr(7002)], &[]);
    wb.wait(T, "blue sees billing", |e| {
        count(e, "discovered", "billing") == 1
    });
    wg.wait(T, "green sees gateway", |e| {
        count(e, "discovered", "gateway") == 1
    });
    // Several beacons and sweep pages of the other environment go by on the group.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        wb.events().len(),
        1,
        "blue sees only blue: {:?}",
        wb.events()
    );
    assert_eq!(
        wg.events().len(),
        1,
        "green sees only green: {:?}",
        wg.events()
    );
    // It may find the green directory from its beacons, never a blue service.
    let strayed = stray.events();
    assert!(
        strayed.iter().all(|e| e.name == "gateway"),
        "nothing crosses environments: {strayed:?}"
    );

    // A green registrant sent to the blue directory is refused, and told why.
    let wrong = Connect {
        directories: vec![blue.addr()],
        environment: GREEN.into(),
        group,
    };
    let mut args = vec![
        "register".to_string(),
        "intruder".into(),
        "127.0.0.1:7003".into(),
    ];
    args.push("--once".into());
    args.extend(wrong.args(&host));
    let err = run(&host, "register to the wrong environment", &args)
        .expect_err("a registration in the wrong environment must fail");
    assert!(
        err.contains("environment") && err.contains(BLUE),
        "the error names the environment mismatch: {err}"
    );
    let m = blue.metrics();
    assert!(m.get("herald_wrong_environment_total") >= 1.0, "{m:?}");
    assert!(
        m.get("herald_rejections_total{reason=\"wrong_environment\"}") >= 1.0,
        "{m:?}"
    );
    // `herald list` over the wrong environment fails too, instead of timing out.
    let mut args = vec!["list".to_string()];
    args.extend(wrong.args(&host));
    let err = run(&host, "list in the wrong environment", &args).expect_err("must fail");
    assert!(err.contains(BLUE), "{err}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(wb.count("discovered", "intruder"), 0);
    assert_eq!(wg.count("discovered", "intruder"), 0);
}
