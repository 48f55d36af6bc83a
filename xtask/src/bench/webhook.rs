//! Webhook throughput, latency and memory: the release webhook (its engine cache fed by the
//! local cluster) and the canned-review floor server, loaded alternately at each fixed rate over
//! one HTTP/2 TLS connection each, as the API server's webhook client would.

use crate::bench::args::Args;
use crate::bench::engines::{
    BENCH_LABEL, create_engines, create_namespaces, create_objects, delete_phase, engine_key, namespace_name,
};
use crate::bench::load::{H2Client, LoadRun, run_fixed_rate, wait_listening};
use crate::bench::phase::{self, Admin, Paths};
use crate::bench::stats::{Histogram, Memory, Quantiles, Sample, sum};
use crate::cluster::pki::{self, Ca};
use crate::cluster::proc::{self, Proc};
use anyhow::{Context, bail};
use bytes::Bytes;
use kube::Client;
use kube::api::{Api, PostParams};
use kube::core::{ApiResource, DynamicObject};
use lmcache_api::constants::{API_VERSION, KIND_BLEND_ENGINE, annotations, labels};
use lmcache_api::v1alpha1::CacheBlendEngine;
use serde::Serialize;
use serde_json::{Value, json};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const PHASE: &str = "webhook";
/// Namespaces the cached engines are spread over, and their creations in flight.
const NAMESPACES: usize = 10;
const CREATE_PARALLEL: usize = 16;
const ENGINE: &str = "bench-blend";
const MUTATE_PATH: &str = "/mutate-cacheblend-pod";
const DURATION_METRIC: &str = "lmcache_webhook_admission_duration_seconds";
const ADMISSIONS: &str = "lmcache_webhook_admission_total";

/// Results of the webhook phase.
#[derive(Clone, Debug, Serialize)]
pub struct WebhookBench {
    pub step_seconds: u64,
    /// Engines in the webhook's caches (both kinds).
    pub cached_engines: f64,
    pub steps: Vec<Step>,
    pub webhook_idle: Memory,
    /// Largest RSS sampled while loaded.
    pub webhook_loaded_rss_mib: f64,
    pub floor_idle: Memory,
    pub floor_loaded_rss_mib: f64,
}

/// One rate.
#[derive(Clone, Debug, Serialize)]
pub struct Step {
    pub rate: u32,
    pub webhook: Side,
    pub floor: Side,
    /// webhook / floor, end to end.
    pub ratio_p50: f64,
    pub ratio_p99: f64,
}

/// One server at one rate.
#[derive(Clone, Debug, Serialize)]
pub struct Side {
    pub sent: u64,
    pub ok: u64,
    pub failed: u64,
    pub achieved_per_s: f64,
    /// Client-side, from each request's scheduled send to its complete answer.
    pub end_to_end: Quantiles,
    /// From the webhook's own histogram (none for the floor).
    pub in_handler: Option<HandlerLatency>,
    /// Reviews the webhook counted as `injected` during the step.
    pub injected: Option<f64>,
    pub max_rss_mib: f64,
}

/// Quantiles estimated from the webhook's histogram (linear inside buckets).
#[derive(Clone, Copy, Debug, Serialize)]
pub struct HandlerLatency {
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub mean_ms: f64,
}

impl HandlerLatency {
    fn from(h: &Histogram) -> Option<Self> {
        let ms = |q: f64| h.quantile(q).map(|s| s * 1000.0);
        Some(Self {
            p50_ms: ms(0.50)?,
            p95_ms: ms(0.95)?,
            p99_ms: ms(0.99)?,
            mean_ms: h.mean()? * 1000.0,
        })
    }
}

pub async fn run(client: &Client, args: &Args, paths: &Paths) -> anyhow::Result<WebhookBench> {
    create_cached_engines(client, args).await?;
    let certs = paths.out.join("certs");
    std::fs::create_dir_all(&certs)?;
    let ca = Ca::new("lmcache-bench-ca")?;
    let (crt, key) = ca.serving("lmcache-bench")?;
    pki::write(&certs.join("tls.crt"), &crt)?;
    pki::write(&certs.join("tls.key"), &key)?;
    let ports = proc::free_ports(2)?;
    let addr = |port: u16| SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let (webhook_addr, floor_addr) = (addr(ports[0]), addr(ports[1]));
    let admin = Admin::new()?;

    let webhook = phase::spawn(
        paths,
        "lmcache-webhook",
        "lmcache-webhook",
        &[
            "serve".to_string(),
            "--bind-address=127.0.0.1".to_string(),
            format!("--port={}", webhook_addr.port()),
            format!("--cert-dir={}", certs.display()),
            format!("--metrics-bind-address={}", admin.metrics),
            format!("--health-probe-bind-address={}", admin.health),
            "--shutdown-delay-seconds=0".to_string(),
        ],
        // install.yaml's environment, so what is measured is what ships.
        &crate::release::manifests::ALLOCATOR_ENV,
    )?;
    let floor = phase::spawn(
        paths,
        "bench-floor-server",
        "xtask",
        &[
            "bench-floor".to_string(),
            format!("--port={}", floor_addr.port()),
            format!("--cert-dir={}", certs.display()),
        ],
        &[],
    )?;
    let result = measure(
        args,
        paths,
        &ca.pem(),
        &admin,
        (&webhook, webhook_addr),
        (&floor, floor_addr),
    )
    .await;
    phase::stop(webhook).await;
    phase::stop(floor).await;
    delete_phase(client, PHASE, None).await?;
    result
}

/// The engines the webhook caches, in a fresh phase: the reviewed CacheBlendEngine and
/// `--webhook-engines` of each kind.
async fn create_cached_engines(client: &Client, args: &Args) -> anyhow::Result<()> {
    delete_phase(client, PHASE, Some(Duration::from_secs(args.timeout))).await?;
    create_namespaces(client, PHASE, NAMESPACES).await?;
    let namespace = namespace_name(PHASE, 0);
    let api: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &namespace,
        &ApiResource::erase::<CacheBlendEngine>(&()),
    );
    api.create(
        &PostParams::default(),
        &serde_json::from_value(blend_engine(&namespace, ENGINE))?,
    )
    .await
    .context("creating the bench CacheBlendEngine")?;
    // The caches a fleet fills: `--webhook-engines` of each kind besides the reviewed one.
    let n = args.webhook_engines;
    eprintln!("[bench] webhook: creating {n} LMCacheEngines and {n} CacheBlendEngines");
    create_engines(client, PHASE, 0..n, NAMESPACES, CREATE_PARALLEL, None).await?;
    let blends = (0..n).map(|j| {
        let (namespace, _) = engine_key(PHASE, j, NAMESPACES);
        blend_engine(&namespace, &format!("blend-{j:04}"))
    });
    create_objects(
        client,
        &ApiResource::erase::<CacheBlendEngine>(&()),
        blends,
        CREATE_PARALLEL,
        None,
    )
    .await
}

async fn measure(
    args: &Args,
    paths: &Paths,
    ca_pem: &str,
    admin: &Admin,
    (webhook, webhook_addr): (&Proc, SocketAddr),
    (floor, floor_addr): (&Proc, SocketAddr),
) -> anyhow::Result<WebhookBench> {
    phase::wait_ready(paths, webhook, admin.health).await?;
    wait_listening(floor_addr, Duration::from_secs(30)).await?;
    let cached = wait_cached(args, admin).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let webhook_idle = memory(webhook.pid)?;
    let floor_idle = memory(floor.pid)?;

    let webhook_client = H2Client::connect(webhook_addr, ca_pem).await?;
    let floor_client = H2Client::connect(floor_addr, ca_pem).await?;
    let body = Bytes::from(serde_json::to_vec(&review(&namespace_name(PHASE, 0)))?);
    // Warm both: connection windows, allocator, the webhook's first decode.
    for client in [&webhook_client, &floor_client] {
        run_fixed_rate(client, MUTATE_PATH, body.clone(), 200, Duration::from_secs(1)).await?;
    }
    let mut steps = Vec::new();
    for &rate in &args.rates {
        let webhook = (webhook, &webhook_client);
        steps.push(load_step(args, admin, rate, &body, webhook, (floor, &floor_client)).await?);
    }
    let max_rss = |side: fn(&Step) -> &Side| steps.iter().map(|s| side(s).max_rss_mib).fold(0.0f64, f64::max);
    Ok(WebhookBench {
        step_seconds: args.duration,
        cached_engines: cached,
        webhook_loaded_rss_mib: max_rss(|s| &s.webhook),
        floor_loaded_rss_mib: max_rss(|s| &s.floor),
        steps,
        webhook_idle,
        floor_idle,
    })
}

/// Waits until the webhook caches every bench engine (ready means its initial lists are done;
/// the last engines may still be on their way); returns how many it caches.
async fn wait_cached(args: &Args, admin: &Admin) -> anyhow::Result<f64> {
    let expected = (2 * args.webhook_engines + 1) as f64;
    let mut cached = 0.0;
    for _ in 0..60 {
        cached = sum(
            &phase::scrape(admin.metrics).await?,
            "lmcache_webhook_cached_engines",
            &[],
        );
        if cached >= expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    if cached < expected {
        bail!("the webhook cached {cached} of the {expected} bench engines");
    }
    Ok(cached)
}

/// One rate: the webhook for `--duration` seconds (its own metrics scraped around it), then the
/// floor server.
async fn load_step(
    args: &Args,
    admin: &Admin,
    rate: u32,
    body: &Bytes,
    (webhook, webhook_client): (&Proc, &H2Client),
    (floor, floor_client): (&Proc, &H2Client),
) -> anyhow::Result<Step> {
    let duration = Duration::from_secs(args.duration);
    eprintln!(
        "[bench] webhook: {rate}/s for {}s (then the floor)",
        args.duration
    );
    let before = phase::scrape(admin.metrics).await?;
    let (run, rss) = sampled(
        webhook.pid,
        run_fixed_rate(webhook_client, MUTATE_PATH, body.clone(), rate, duration),
    )
    .await;
    let after = phase::scrape(admin.metrics).await?;
    let webhook_side = side(run?, rss, Some((&before, &after)));
    if webhook_side.injected.unwrap_or(0.0) < 1.0 {
        bail!("the webhook injected nothing at {rate}/s: the bench review does not take the injection path");
    }
    let (run, floor_rss) = sampled(
        floor.pid,
        run_fixed_rate(floor_client, MUTATE_PATH, body.clone(), rate, duration),
    )
    .await;
    let floor_side = side(run?, floor_rss, None);
    Ok(Step {
        rate,
        ratio_p50: ratio(webhook_side.end_to_end.p50_ms, floor_side.end_to_end.p50_ms),
        ratio_p99: ratio(webhook_side.end_to_end.p99_ms, floor_side.end_to_end.p99_ms),
        webhook: webhook_side,
        floor: floor_side,
    })
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}

fn memory(pid: u32) -> anyhow::Result<Memory> {
    Memory::of(pid).ok_or_else(|| anyhow::anyhow!("cannot read /proc/{pid}/status"))
}

/// Runs `work` while sampling the RSS of `pid` every 200 ms; returns its result and the largest
/// sample (MiB).
async fn sampled<T>(pid: u32, work: impl std::future::Future<Output = T>) -> (T, f64) {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let sampler = tokio::spawn(async move {
        let mut max = 0.0f64;
        while !flag.load(Ordering::Relaxed) {
            if let Some(m) = Memory::of(pid) {
                max = max.max(m.rss_mib);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        max
    });
    let out = work.await;
    stop.store(true, Ordering::Relaxed);
    let max = sampler.await.unwrap_or(0.0);
    (out, max)
}

fn side(mut run: LoadRun, max_rss_mib: f64, scrapes: Option<(&[Sample], &[Sample])>) -> Side {
    let (in_handler, injected) = match scrapes {
        Some((before, after)) => {
            let h = Histogram::from_samples(after, DURATION_METRIC)
                .since(&Histogram::from_samples(before, DURATION_METRIC));
            let injected = sum(after, ADMISSIONS, &[("outcome", "injected")])
                - sum(before, ADMISSIONS, &[("outcome", "injected")]);
            (HandlerLatency::from(&h), Some(injected))
        }
        None => (None, None),
    };
    Side {
        sent: run.sent,
        ok: run.ok,
        failed: run.failed,
        achieved_per_s: run.achieved_rate(),
        end_to_end: Quantiles::of_micros(&mut run.latencies_us),
        in_handler,
        injected,
        max_rss_mib,
    }
}

/// A CacheBlendEngine with a payload image set, so the pods that name it get injected.
fn blend_engine(namespace: &str, name: &str) -> Value {
    json!({
        "apiVersion": API_VERSION,
        "kind": KIND_BLEND_ENGINE,
        "metadata": {"name": name, "namespace": namespace, "labels": {BENCH_LABEL: PHASE}},
        "spec": {
            "l1": {"sizeGB": 1},
            "injection": {"payloadImage": {"repository": "registry.example.com/cacheblend-plugin", "tag": "v1"}},
        },
    })
}

/// The AdmissionReview the API server sends for an opted-in vLLM pod of a Deployment.
fn review(namespace: &str) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "name": "",
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "generateName": "vllm-cacheblend-7d9c-",
                    "namespace": namespace,
                    "labels": {"app": "vllm-cacheblend", labels::CACHEBLEND_INJECT: "true"},
                    "annotations": {annotations::CACHEBLEND_ENGINE: ENGINE},
                },
                "spec": {
                    "runtimeClassName": "nvidia",
                    "containers": [{
                        "name": "vllm",
                        "image": "lmcache/vllm-openai:v0.11.0",
                        "args": ["meta-llama/Llama-3.1-8B-Instruct", "--port", "8000", "--gpu-memory-utilization", "0.8"],
                        "resources": {"limits": {"nvidia.com/gpu": "1"}},
                    }],
                },
            },
            "oldObject": null,
            "dryRun": false,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"},
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bench_engine_decodes_and_the_review_names_it() {
        let engine = blend_engine("bench-webhook-0", ENGINE);
        let decoded = lmcache_validation::decode_blend_engine(&engine).unwrap();
        assert!(decoded.spec.injection.unwrap().payload_image.is_some());
        let review = review("bench-webhook-0");
        let pod = &review["request"]["object"];
        assert_eq!(
            pod["metadata"]["annotations"][annotations::CACHEBLEND_ENGINE],
            ENGINE
        );
        assert_eq!(pod["metadata"]["labels"][labels::CACHEBLEND_INJECT], "true");
        assert_eq!(pod["metadata"]["namespace"], engine["metadata"]["namespace"]);
        assert_eq!(review["request"]["operation"], "CREATE");
    }

    #[test]
    fn handler_latency_needs_observations() {
        assert!(HandlerLatency::from(&Histogram::default()).is_none());
        let h = Histogram {
            buckets: vec![(0.0001, 50.0), (0.0002, 100.0), (f64::INFINITY, 100.0)],
            sum: 0.01,
            count: 100.0,
        };
        let l = HandlerLatency::from(&h).unwrap();
        assert!((l.p50_ms - 0.1).abs() < 1e-9);
        assert!((l.mean_ms - 0.1).abs() < 1e-9);
    }
}
