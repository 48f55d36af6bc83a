//! Reading the product's Prometheus metrics over plain HTTP on 127.0.0.1.

use crate::settings::ensure_loopback;
use anyhow::{Context, bail};
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `GET /metrics` from `addr` (loopback only); the response body.
pub async fn metrics(addr: SocketAddr) -> anyhow::Result<String> {
    ensure_loopback(addr)?;
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        bail!("malformed HTTP response from {addr}");
    };
    if !head.starts_with("HTTP/1.1 200") {
        bail!(
            "GET http://{addr}/metrics: {}",
            head.lines().next().unwrap_or_default()
        );
    }
    if head
        .lines()
        .any(|l| l.eq_ignore_ascii_case("transfer-encoding: chunked"))
    {
        return Ok(dechunk(body));
    }
    Ok(body.to_string())
}

/// The body of a chunked transfer encoding.
fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || after.len() < size {
            break;
        }
        out.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    out
}

/// The sum of every sample of `metric` (any labels) whose label set contains every
/// `name="value"` pair in `with`. Missing metric: 0.
pub fn sum(text: &str, metric: &str, with: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => (name, labels.trim_end_matches('}')),
                None => (series, ""),
            };
            if name != metric {
                return None;
            }
            let matches = with
                .iter()
                .all(|(k, v)| labels.split(',').any(|pair| pair == format!("{k}=\"{v}\"")));
            matches.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP x\n\
        lmcache_operator_api_writes_total{verb=\"PATCH\",kind=\"daemonsets\"} 3\n\
        lmcache_operator_api_writes_total{verb=\"POST\",kind=\"events\"} 2\n\
        lmcache_operator_api_writes_total_other 7\n\
        lmcache_operator_objects{kind=\"LMCacheEngine\"} 1\n";

    #[test]
    fn sums_samples_with_matching_labels() {
        assert_eq!(sum(TEXT, "lmcache_operator_api_writes_total", &[]), 5.0);
        assert_eq!(
            sum(TEXT, "lmcache_operator_api_writes_total", &[("verb", "POST")]),
            2.0
        );
        assert_eq!(
            sum(TEXT, "lmcache_operator_objects", &[("kind", "LMCacheEngine")]),
            1.0
        );
        assert_eq!(sum(TEXT, "missing", &[]), 0.0);
    }

    #[test]
    fn chunked_bodies_are_joined() {
        assert_eq!(dechunk("3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"), "abcde");
    }
}
