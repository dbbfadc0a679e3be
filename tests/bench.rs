//! `berth bench` end to end: against a real node, and against a real etcd
//! member with `--system etcd` (the comparison BENCHMARKS.md relies on).
//!
//! The etcd test needs Debian's `etcd-server` (`etcd` on the PATH). Without
//! it the test says so and passes, unless `BERTH_REQUIRE_ETCD` is set (CI
//! sets it after installing the package), so that CI cannot skip it silently.

mod common;

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{TestNode, bounded, free_port};

/// Runs `berth --endpoints <endpoint> --output json bench <args>` for a
/// short window and returns the parsed report; fails the test on a non-zero
/// exit.
fn bench(endpoint: &str, args: &[&str]) -> serde_json::Value {
    let window = [
        "--duration",
        "1s",
        "--warmup",
        "200ms",
        "--concurrency",
        "4",
    ];
    let out = run_bench(endpoint, &[&window[..], args].concat());
    assert!(
        out.status.success(),
        "berth bench {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("bench prints one JSON report")
}

/// Runs `berth --endpoints <endpoint> --output json bench <args>`.
fn run_bench(endpoint: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["--endpoints", endpoint, "--output", "json", "bench"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run berth bench")
}

/// Checks a report: the expected system and workload, some successful
/// requests, no failed ones.
fn assert_clean(report: &serde_json::Value, system: &str, workload: &str) {
    assert_eq!(report["system"], system, "{report}");
    assert_eq!(report["workload"], workload, "{report}");
    assert!(
        report["ops"].as_u64().unwrap_or(0) > 0,
        "no request succeeded: {report}"
    );
    assert_eq!(
        report["errors"],
        serde_json::json!({}),
        "requests failed: {report}"
    );
    assert!(
        report["latency_ms"]["p99"].as_f64().unwrap_or(0.0) > 0.0,
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bench_runs_every_workload_against_a_node() {
    bounded(async {
        let node = TestNode::start_single().await;
        for workload in ["write", "read", "update", "mixed"] {
            let report = tokio::task::block_in_place(|| {
                bench(&node.addr, &["--workload", workload, "--keys", "20"])
            });
            assert_clean(&report, "berth", workload);
        }
        // A single-threaded load generator, as BENCHMARKS.md runs it.
        let report = tokio::task::block_in_place(|| {
            bench(&node.addr, &["--workload", "write", "--threads", "1"])
        });
        assert_clean(&report, "berth", "write");
        assert_eq!(report["threads"], 1, "{report}");
    })
    .await;
}

/// One etcd member on loopback, killed (by pid) and reaped when dropped.
struct Etcd {
    child: Child,
    client_addr: String,
}

impl Etcd {
    fn start(data_dir: &Path) -> Etcd {
        let client_addr = format!("127.0.0.1:{}", free_port());
        let peer_url = format!("http://127.0.0.1:{}", free_port());
        let log = std::fs::File::create(data_dir.with_extension("log")).unwrap();
        let child = Command::new("etcd")
            .args(["--name", "bench", "--data-dir"])
            .arg(data_dir)
            .args(["--listen-client-urls", &format!("http://{client_addr}")])
            .args(["--advertise-client-urls", &format!("http://{client_addr}")])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("bench={peer_url}")])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start etcd");
        let mut etcd = Etcd { child, client_addr };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(&etcd.client_addr).is_err() {
            let log =
                || std::fs::read_to_string(data_dir.with_extension("log")).unwrap_or_default();
            if let Ok(Some(status)) = etcd.child.try_wait() {
                panic!("etcd exited ({status}) before listening:\n{}", log());
            }
            assert!(
                Instant::now() < deadline,
                "etcd did not listen within 20s:\n{}",
                log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        etcd
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn etcd_installed() -> bool {
    Command::new("etcd")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn bench_loads_etcd_with_the_same_workloads() {
    if !etcd_installed() {
        assert!(
            std::env::var_os("BERTH_REQUIRE_ETCD").is_none(),
            "BERTH_REQUIRE_ETCD is set but `etcd` is not on the PATH"
        );
        eprintln!("skipped: `etcd` is not installed (Debian: apt install etcd-server)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let etcd = Etcd::start(&tmp.path().join("etcd"));
    // A fresh member may answer before it has elected itself; the first
    // run's setup retries nothing, so wait for one successful write run.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = run_bench(
            &etcd.client_addr,
            &[
                "--system",
                "etcd",
                "--duration",
                "200ms",
                "--warmup",
                "0s",
                "--concurrency",
                "1",
            ],
        );
        if out.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "etcd never took a write: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // `read` fails its requests with NotFound unless setup's puts landed
    // and ranges find them, so a clean read run shows both work.
    for workload in ["write", "read", "mixed"] {
        let report = bench(
            &etcd.client_addr,
            &["--system", "etcd", "--workload", workload, "--keys", "20"],
        );
        assert_clean(&report, "etcd", workload);
    }
    let serializable = bench(
        &etcd.client_addr,
        &[
            "--system",
            "etcd",
            "--workload",
            "read",
            "--keys",
            "20",
            "--consistency",
            "serializable",
        ],
    );
    assert_clean(&serializable, "etcd", "read");
    assert_eq!(serializable["consistency"], "serializable");
}
