//! Leadership and health of the operator process (lifecycle.md §4), with operators this test
//! starts itself: `cargo xtask e2e` runs `alone_*` tests one at a time, after stopping the shared
//! operator and webhook.

use lmcache_e2e::crd::Kind;
use lmcache_e2e::objects::{Scope, borrowed, engine_children};
use lmcache_e2e::product::{self, Process, Proxy};
use lmcache_e2e::{Cluster, TempNamespace, settings, wait};
use serde_json::json;
use std::time::Duration;

const LEASE: &str = "lmcache-operator-controller-leader";

/// The Lease's holder identity (`<host>_<pid>`), if any.
async fn holder(cluster: &Cluster) -> anyhow::Result<Option<String>> {
    let lease = cluster
        .kubectl
        .get_json(&settings::operator_namespace(), &["lease", LEASE])
        .await;
    Ok(lease
        .ok()
        .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_string))
        .filter(|h| !h.is_empty()))
}

fn is(holder: &Option<String>, process: &Process) -> bool {
    holder
        .as_deref()
        .is_some_and(|h| h.ends_with(&format!("_{}", process.id())))
}

/// A leader cut off from the API server stops before its lease can expire for the others
/// (renew deadline 10 s < lease 15 s): it exits non-zero, and only then a standby takes over
/// and reconciles a new change.
#[tokio::test]
#[ignore = "needs a cluster: cargo xtask e2e"]
async fn alone_leader_without_api_exits_and_a_standby_takes_over() -> anyhow::Result<()> {
    let cluster = Cluster::connect().await?;
    let namespace = TempNamespace::create(&cluster, "leader").await?;
    let s = Scope::new(&cluster, &namespace);
    let kubeconfig = settings::operator_kubeconfig()?;
    let proxy = Proxy::start(product::api_server(&kubeconfig)?).await?;
    let via_proxy = product::kubeconfig_via(&kubeconfig, proxy.addr(), "leader-a")?;

    let mut a = Process::operator("leader-a", &via_proxy, product::free_addr()?, &["--leader-elect"])?;
    wait::until("leader-a holds the Lease", Duration::from_secs(60), || async {
        Ok(is(&holder(&cluster).await?, &a).then_some(()))
    })
    .await?;
    let mut b = Process::operator(
        "leader-b",
        &kubeconfig,
        product::free_addr()?,
        &["--leader-elect"],
    )?;
    s.apply_cr(Kind::Engine, "before", &json!({"l1": {"sizeGB": 1}}))
        .await?;
    s.wait_exist(&borrowed(&engine_children("before"))).await?;
    assert!(is(&holder(&cluster).await?, &a), "the standby must not lead");
    assert!(b.exited().is_none(), "standby exited: {}", b.log());

    // Cut leader-a off. It must be gone before leader-b holds the Lease.
    proxy.pause();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        let a_status = a.exited();
        if is(&holder(&cluster).await?, &b) {
            break a_status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no hand-over; leader-a:\n{}",
            a.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let status = status.unwrap_or_else(|| panic!("leader-b leads while leader-a still runs:\n{}", a.log()));
    assert!(!status.success(), "leader-a exit status {status}");
    assert!(a.log().contains("renew deadline"), "{}", a.log());

    // The new leader reconciles a change made after the hand-over.
    s.apply_cr(Kind::Engine, "after", &json!({"l1": {"sizeGB": 1}}))
        .await?;
    s.wait_exist(&borrowed(&engine_children("after"))).await?;
    b.stop(Duration::from_secs(15));
    Ok(())
}

/// `/healthz` fails when the watches never complete their initial list (here: the webhook's
/// ServiceAccount, which may not list DaemonSets), so the kubelet restarts such an operator.
#[tokio::test]
#[ignore = "needs a cluster: cargo xtask e2e"]
async fn alone_healthz_fails_when_the_watches_never_list() -> anyhow::Result<()> {
    let health = product::free_addr()?;
    let operator = Process::operator(
        "liveness",
        &settings::webhook_kubeconfig()?,
        health,
        &["--liveness-timeout=3s"],
    )?;
    // Alive at first, unhealthy once the initial list has been missing for 3 s; never ready.
    wait::until("/healthz answers 200", Duration::from_secs(30), || async {
        Ok((product::http_status(health, "/healthz") == Some(200)).then_some(()))
    })
    .await?;
    wait::until("/healthz fails", Duration::from_secs(60), || async {
        Ok((product::http_status(health, "/healthz") == Some(500)).then_some(()))
    })
    .await?;
    assert_eq!(product::http_status(health, "/readyz"), Some(503));
    assert!(operator.log().contains("watch error"), "{}", operator.log());
    Ok(())
}
