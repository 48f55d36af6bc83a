//! How the operator fills its caches (docs/operator.md, "Initial lists"), with operators this
//! test starts itself: against this cluster's API server (Kubernetes 1.35, WatchList on) the
//! start-up probe chooses streamed lists; `--list-strategy=paged` (what a 1.33 cluster gets) fills
//! the same caches page by page. Either way an engine created before the start arrives through
//! the initial list, and a child deleted afterwards arrives through the watch and is recreated.

use lmcache_e2e::crd::Kind;
use lmcache_e2e::objects::{Res, Scope, borrowed, engine_children, uid};
use lmcache_e2e::product::{self, Process};
use lmcache_e2e::{Cluster, TempNamespace, settings};
use serde_json::json;
use std::time::Duration;

#[tokio::test]
#[ignore = "needs a cluster: cargo xtask e2e"]
async fn alone_initial_lists_are_streamed_when_offered_and_paged_on_request() -> anyhow::Result<()> {
    let cluster = Cluster::connect().await?;
    let namespace = TempNamespace::create(&cluster, "lists").await?;
    let s = Scope::new(&cluster, &namespace);
    let kubeconfig = settings::operator_kubeconfig()?;
    // Exists before any operator runs: only an initial list can bring it.
    s.apply_cr(Kind::Engine, "listed", &json!({"l1": {"sizeGB": 1}}))
        .await?;
    let config_map = "listed-connection";
    for (name, flags, chosen) in [
        ("lists-auto", &[][..], "initial lists: streaming"),
        (
            "lists-paged",
            &["--list-strategy=paged"][..],
            "initial lists: paged",
        ),
    ] {
        let operator = Process::operator(name, &kubeconfig, product::free_addr()?, flags)?;
        s.wait_exist(&borrowed(&engine_children("listed"))).await?;
        let old = s.must_get(Res::ConfigMap, config_map).await?;
        s.delete(Res::ConfigMap, config_map).await?;
        s.wait(&format!("{name}: ConfigMap {config_map} recreated"), || async {
            Ok(s.get(Res::ConfigMap, config_map)
                .await?
                .filter(|cm| uid(cm) != uid(&old) && cm["metadata"]["deletionTimestamp"].is_null()))
        })
        .await?;
        let log = operator.log();
        assert!(log.contains(chosen), "{name} should log {chosen:?}:\n{log}");
        assert!(!log.contains("watch error"), "{name}:\n{log}");
        operator.stop(Duration::from_secs(15));
    }
    Ok(())
}
