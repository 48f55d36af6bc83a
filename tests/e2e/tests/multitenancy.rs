//! behaviours.md §I and multitenancy.md §3 on the real control plane: objects with the same
//! names in two namespaces (`team-a`, `team-b`, made unique per run) never affect each other.

use lmcache_e2e::crd::Kind;
use lmcache_e2e::objects::{
    Res, Scope, args, borrowed, condition, controller_uid, engine_children, engine_connection_json,
    resource_version, uid,
};
use lmcache_e2e::{Cluster, TempNamespace, settings};
use serde_json::{Value, json};

/// Two namespaces, `team-a-…` and `team-b-…`.
async fn teams(test: &str) -> anyhow::Result<[(Scope, TempNamespace); 2]> {
    settings::operator_health()?;
    let cluster = Cluster::connect().await?;
    let a = TempNamespace::create(&cluster, &format!("team-a-{test}")).await?;
    let b = TempNamespace::create(&cluster, &format!("team-b-{test}")).await?;
    Ok([(Scope::new(&cluster, &a), a), (Scope::new(&cluster, &b), b)])
}

fn port_spec(port: u16) -> Value {
    json!({"l1": {"sizeGB": 60}, "server": {"port": port}})
}

/// `(uid, resourceVersion)` of each object, for "unchanged" comparisons.
async fn identities(s: &Scope, objects: &[(Res, &str)]) -> anyhow::Result<Vec<(String, String, String)>> {
    let mut out = Vec::new();
    for (res, name) in objects {
        let obj = s.must_get(*res, name).await?;
        out.push((
            format!("{} {name}", res.kind()),
            uid(&obj),
            resource_version(&obj),
        ));
    }
    Ok(out)
}

async fn coordinator_url(s: &Scope, engine: &str) -> anyhow::Result<Option<String>> {
    let Some(ds) = s.get(Res::DaemonSet, engine).await? else {
        return Ok(None);
    };
    let args = args(&ds);
    Ok(args
        .iter()
        .position(|a| a == "--coordinator-url")
        .and_then(|i| args.get(i + 1).cloned()))
}

#[tokio::test]
#[ignore = "needs a cluster: cargo xtask e2e"]
async fn i116_mtt1_mtt2_same_named_engines_stay_separate_and_deleting_one_spares_the_other()
-> anyhow::Result<()> {
    let [(a, _na), (b, _nb)] = teams("mtt1").await?;
    a.apply_cr(Kind::Engine, "cache", &port_spec(5555)).await?;
    b.apply_cr(Kind::Engine, "cache", &port_spec(6555)).await?;
    let children = engine_children("cache");

    // MTT-1: each namespace has its own four children and its own connection data.
    for (s, port) in [(&a, 5555), (&b, 6555)] {
        let found = s.wait_exist(&borrowed(&children)).await?;
        let engine = s.must_get(Res::Cr(Kind::Engine), "cache").await?;
        for child in &found {
            assert_eq!(controller_uid(child), uid(&engine), "{}", s.ns);
        }
        assert_eq!(
            found[3]["data"]["kv-transfer-config.json"],
            engine_connection_json("cache", &s.ns, port)
        );
        let engine = s.wait_running(Kind::Engine, "cache", 3).await?;
        // Each status counts only its own pods.
        let pods: Vec<String> = s
            .list(Res::Pod, "app.kubernetes.io/instance=cache")
            .await?
            .iter()
            .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_string))
            .collect();
        let mut in_status: Vec<String> = engine["status"]["endpoints"]
            .as_array()
            .map(|e| {
                e.iter()
                    .filter_map(|e| e["podName"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        in_status.sort();
        let mut pods = pods;
        pods.sort();
        assert_eq!(in_status, pods, "{}", s.ns);
        assert!(
            engine["status"]["endpoints"]
                .as_array()
                .is_some_and(|e| e.iter().all(|e| e["port"] == port))
        );
    }

    // MTT-2: deleting team-a's engine removes only team-a's children.
    b.wait_daemonset_settled("cache", 3).await?;
    let mut watched = borrowed(&children);
    watched.push((Res::Cr(Kind::Engine), "cache"));
    let before = identities(&b, &watched).await?;
    a.delete(Res::Cr(Kind::Engine), "cache").await?;
    a.wait_gone(&borrowed(&children)).await?;
    let after = identities(&b, &watched).await?;
    assert_eq!(before, after, "team-b's objects changed");
    Ok(())
}

#[tokio::test]
#[ignore = "needs a cluster: cargo xtask e2e"]
async fn i118_mtt7_mtt8_coordinator_refs_resolve_in_their_own_namespace() -> anyhow::Result<()> {
    let [(a, _na), (b, _nb)] = teams("mtt7").await?;
    let mut spec = Kind::Engine.minimal_spec();
    spec["coordinator"] = json!({"ref": {"name": "coord"}});
    for (s, port) in [(&a, 9300), (&b, 9400)] {
        s.apply_cr(Kind::Coordinator, "coord", &json!({"port": port}))
            .await?;
        s.apply_cr(Kind::Engine, "cache", &spec).await?;
    }
    // MTT-7.
    for (s, port) in [(&a, 9300), (&b, 9400)] {
        let want = format!("http://coord.{}.svc:{port}", s.ns);
        s.wait(&format!("--coordinator-url {want}"), || async {
            Ok((coordinator_url(s, "cache").await?.as_deref() == Some(want.as_str())).then_some(()))
        })
        .await?;
    }
    a.wait_running(Kind::Engine, "cache", 3).await?;
    a.wait_daemonset_settled("cache", 3).await?;
    let a_ds = a.must_get(Res::DaemonSet, "cache").await?;

    // MTT-8: team-b's port change reaches only team-b's engine.
    b.apply_cr(Kind::Coordinator, "coord", &json!({"port": 9500}))
        .await?;
    let want = format!("http://coord.{}.svc:9500", b.ns);
    b.wait("team-b engine on 9500", || async {
        Ok((coordinator_url(&b, "cache").await?.as_deref() == Some(want.as_str())).then_some(()))
    })
    .await?;
    let a_now = a.must_get(Res::DaemonSet, "cache").await?;
    assert_eq!(resource_version(&a_now), resource_version(&a_ds));
    assert_eq!(
        coordinator_url(&a, "cache").await?,
        Some(format!("http://coord.{}.svc:9300", a.ns))
    );

    // MTT-8: deleting team-a's coordinator affects only team-a's engine.
    b.wait_running(Kind::Engine, "cache", 3).await?;
    b.wait_daemonset_settled("cache", 3).await?;
    let b_ds = b.must_get(Res::DaemonSet, "cache").await?;
    a.delete(Res::Cr(Kind::Coordinator), "coord").await?;
    a.wait_status(Kind::Engine, "cache", "CoordinatorNotFound", |st| {
        condition(st, "ConfigValid")["reason"] == "CoordinatorNotFound"
    })
    .await?;
    let b_engine = b.must_get(Res::Cr(Kind::Engine), "cache").await?;
    assert_eq!(condition(&b_engine["status"], "ConfigValid")["status"], "True");
    let b_now = b.must_get(Res::DaemonSet, "cache").await?;
    assert_eq!(resource_version(&b_now), resource_version(&b_ds));
    // team-a's running pods are not changed either (engine.md §8: no child written).
    assert_eq!(
        coordinator_url(&a, "cache").await?,
        Some(format!("http://coord.{}.svc:9300", a.ns))
    );
    Ok(())
}

#[tokio::test]
#[ignore = "needs a cluster: cargo xtask e2e"]
async fn mtt10_mtt11_name_conflicts_stay_inside_their_namespace() -> anyhow::Result<()> {
    let [(a, _na), (b, _nb)] = teams("mtt10").await?;

    // MTT-11: a user ConfigMap `cache-connection` in team-a only.
    a.apply_manifest(&json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "cache-connection"}, "data": {"user": "data"}
    }))
    .await?;
    let user_cm = a.must_get(Res::ConfigMap, "cache-connection").await?;
    // MTT-10: LMCacheEngine x first, then CacheBlendEngine x, in team-a; engine x in team-b.
    a.apply_cr(Kind::Engine, "x", &Kind::Engine.minimal_spec())
        .await?;
    a.wait_exist(&borrowed(&engine_children("x"))).await?;
    a.apply_cr(Kind::BlendEngine, "x", &Kind::BlendEngine.minimal_spec())
        .await?;
    a.apply_cr(Kind::Engine, "cache", &Kind::Engine.minimal_spec())
        .await?;
    b.apply_cr(Kind::Engine, "x", &Kind::Engine.minimal_spec())
        .await?;
    b.apply_cr(Kind::Engine, "cache", &Kind::Engine.minimal_spec())
        .await?;

    for (kind, name) in [(Kind::BlendEngine, "x"), (Kind::Engine, "cache")] {
        let obj = a
            .wait_status(kind, name, "NameConflict", |st| {
                condition(st, "ConfigValid")["reason"] == "NameConflict"
            })
            .await?;
        assert_eq!(obj["status"]["phase"], "Failed");
    }
    let engine_x = a.must_get(Res::Cr(Kind::Engine), "x").await?;
    for child in a.wait_exist(&borrowed(&engine_children("x"))).await? {
        assert_eq!(controller_uid(&child), uid(&engine_x));
    }
    let cm = a.must_get(Res::ConfigMap, "cache-connection").await?;
    assert_eq!(resource_version(&cm), resource_version(&user_cm));
    assert!(a.get(Res::DaemonSet, "cache").await?.is_none());

    // team-b: no conflict for either name.
    for name in ["x", "cache"] {
        b.wait_running(Kind::Engine, name, 3).await?;
        let engine = b.must_get(Res::Cr(Kind::Engine), name).await?;
        assert_eq!(condition(&engine["status"], "ConfigValid")["status"], "True");
        for child in b.wait_exist(&borrowed(&engine_children(name))).await? {
            assert_eq!(controller_uid(&child), uid(&engine), "{name}");
        }
    }
    Ok(())
}

#[tokio::test]
#[ignore = "needs a cluster: cargo xtask e2e"]
async fn i119_mtt9_a_recreated_engine_never_adopts_the_old_children() -> anyhow::Result<()> {
    let [(a, _na), (b, _nb)] = teams("mtt9").await?;
    a.apply_cr(Kind::Engine, "cache", &port_spec(5555)).await?;
    b.apply_cr(Kind::Engine, "cache", &port_spec(5555)).await?;
    let children = engine_children("cache");
    let old = a.wait_exist(&borrowed(&children)).await?;
    a.wait_running(Kind::Engine, "cache", 3).await?;
    let old_engine = a.must_get(Res::Cr(Kind::Engine), "cache").await?;
    let old_uids: Vec<String> = old.iter().map(uid).collect();

    // Delete and re-create at once, with a different spec, before GC has run.
    a.delete(Res::Cr(Kind::Engine), "cache").await?;
    a.wait_gone(&[(Res::Cr(Kind::Engine), "cache")]).await?;
    a.apply_cr(Kind::Engine, "cache", &port_spec(6555)).await?;
    let new_engine = a.must_get(Res::Cr(Kind::Engine), "cache").await?;
    assert_ne!(uid(&new_engine), uid(&old_engine));

    // Until the old children are gone, none of them may carry the new owner.
    let new_uid = uid(&new_engine);
    let found = a
        .wait("the new engine's own children", || async {
            let mut out = Vec::new();
            for ((res, name), old_uid) in children.iter().zip(&old_uids) {
                let Some(obj) = a.get(*res, name).await? else {
                    return Ok(None);
                };
                if &uid(&obj) == old_uid {
                    if controller_uid(&obj) == new_uid {
                        anyhow::bail!("{} {name} of the old engine was adopted", res.kind());
                    }
                    return Ok(None);
                }
                out.push(obj);
            }
            Ok(Some(out))
        })
        .await
        .map_err(|e| {
            if e.to_string().contains("was adopted") {
                e.context("MTT-9 violated")
            } else {
                e
            }
        })?;
    for obj in &found {
        assert_eq!(controller_uid(obj), new_uid);
    }
    assert_eq!(args(&found[0])[3], "6555");

    // The new incarnation's status is its own: generation 1, endpoints on 6555.
    let engine = a.wait_running(Kind::Engine, "cache", 3).await?;
    assert_eq!(engine["status"]["observedGeneration"], 1);
    assert!(
        engine["status"]["endpoints"]
            .as_array()
            .is_some_and(|e| e.iter().all(|e| e["port"] == 6555)),
        "{}",
        engine["status"]
    );
    // team-b's same-named engine is untouched throughout.
    let b_engine = b.wait_running(Kind::Engine, "cache", 3).await?;
    assert_eq!(b_engine["metadata"]["generation"], 1);
    Ok(())
}
