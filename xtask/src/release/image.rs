//! `cargo xtask image`: daemonless, reproducible OCI image archives of the two binaries.
//!
//! Each image is one layer: the statically linked binary at `/<name>`, the host's CA bundle and
//! a passwd/group with the nonroot user 65532. Every timestamp is `SOURCE_DATE_EPOCH` (default 0),
//! entries are sorted and gzip carries no name or time, so the same binary gives the same digest.

use crate::util::{root, run_env};
use anyhow::{Context, bail};
use flate2::{Compression, GzBuilder};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// The binaries packaged as images.
pub const IMAGES: [&str; 2] = ["lmcache-operator", "lmcache-webhook"];

const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
const PASSWD: &str =
    "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n";
const GROUP: &str = "root:x:0:\nnonroot:x:65532:\n";

pub struct Built {
    pub name: String,
    pub archive: PathBuf,
    pub digest: String,
    pub size: u64,
}

/// Builds static release binaries and writes `target/images/<name>.tar` (OCI archive).
pub fn run(skip_build: bool) -> anyhow::Result<Vec<Built>> {
    if !skip_build {
        build_static()?;
    }
    let out = root().join("target/images");
    std::fs::create_dir_all(&out)?;
    let epoch = source_date_epoch();
    let mut built = Vec::new();
    for name in IMAGES {
        let binary = binary_path(name);
        let archive = out.join(format!("{name}.tar"));
        let digest = write_image(name, &binary, &archive, epoch)?;
        let size = std::fs::metadata(&archive)?.len();
        eprintln!(
            "{name}: {} ({:.1} MiB) manifest {digest}",
            archive.display(),
            size as f64 / 1048576.0
        );
        built.push(Built {
            name: name.to_string(),
            archive,
            digest,
            size,
        });
    }
    Ok(built)
}

/// Static glibc binaries: `+crt-static` on the host target (no other target can be installed
/// here). An explicit `--target` keeps the flag off build scripts and proc-macros, which must stay
/// dynamic, and puts the binaries in their own directory.
fn build_static() -> anyhow::Result<()> {
    let flags = "-C target-feature=+crt-static --remap-path-prefix=/root/.cargo=/cargo";
    for name in IMAGES {
        let profile = profile_of(name);
        let args = [
            "build",
            "--profile",
            profile,
            "--locked",
            "-p",
            name,
            "--target",
            HOST_TARGET,
        ];
        run_env("cargo", &args, &[("RUSTFLAGS", flags)])?;
    }
    Ok(())
}

const HOST_TARGET: &str = "x86_64-unknown-linux-gnu";

/// The cargo profile a product binary is released with: the webhook has its own, smaller one
/// (Cargo.toml, `release-webhook`).
pub fn profile_of(name: &str) -> &'static str {
    if name == "lmcache-webhook" {
        "release-webhook"
    } else {
        "release"
    }
}

fn binary_path(name: &str) -> PathBuf {
    root()
        .join("target")
        .join(HOST_TARGET)
        .join(profile_of(name))
        .join(name)
}

fn source_date_epoch() -> u64 {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

fn tar_entry(
    builder: &mut tar::Builder<Vec<u8>>,
    path: &str,
    data: &[u8],
    mode: u32,
    epoch: u64,
) -> anyhow::Result<()> {
    let mut header = tar::Header::new_ustar();
    header.set_size(data.len() as u64);
    header.set_mode(mode);
    header.set_mtime(epoch);
    header.set_uid(0);
    header.set_gid(0);
    header.set_entry_type(tar::EntryType::Regular);
    builder.append_data(&mut header, path, data)?;
    Ok(())
}

fn tar_dir(builder: &mut tar::Builder<Vec<u8>>, path: &str, mode: u32, epoch: u64) -> anyhow::Result<()> {
    let mut header = tar::Header::new_ustar();
    header.set_size(0);
    header.set_mode(mode);
    header.set_mtime(epoch);
    header.set_entry_type(tar::EntryType::Directory);
    builder.append_data(&mut header, path, std::io::empty())?;
    Ok(())
}

/// The single layer as an uncompressed tar.
fn layer(name: &str, binary: &[u8], epoch: u64) -> anyhow::Result<Vec<u8>> {
    let ca =
        std::fs::read(CA_BUNDLE).with_context(|| format!("reading {CA_BUNDLE} (install ca-certificates)"))?;
    let mut b = tar::Builder::new(Vec::new());
    tar_dir(&mut b, "etc/", 0o755, epoch)?;
    tar_entry(&mut b, "etc/group", GROUP.as_bytes(), 0o644, epoch)?;
    tar_entry(&mut b, "etc/passwd", PASSWD.as_bytes(), 0o644, epoch)?;
    tar_dir(&mut b, "etc/ssl/", 0o755, epoch)?;
    tar_dir(&mut b, "etc/ssl/certs/", 0o755, epoch)?;
    tar_entry(&mut b, "etc/ssl/certs/ca-certificates.crt", &ca, 0o644, epoch)?;
    tar_dir(&mut b, "home/", 0o755, epoch)?;
    tar_dir(&mut b, "home/nonroot/", 0o755, epoch)?;
    tar_entry(&mut b, name, binary, 0o755, epoch)?;
    tar_dir(&mut b, "tmp/", 0o1777, epoch)?;
    Ok(b.into_inner()?)
}

fn gzip(data: &[u8]) -> anyhow::Result<Vec<u8>> {
    use std::io::Write;
    let mut gz = GzBuilder::new().mtime(0).write(Vec::new(), Compression::best());
    gz.write_all(data)?;
    Ok(gz.finish()?)
}

fn rfc3339(epoch: u64) -> String {
    // Days-from-civil inverse (Howard Hinnant), enough for a fixed build timestamp.
    let days = (epoch / 86_400) as i64;
    let secs = epoch % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

fn descriptor(media_type: &str, bytes: &[u8]) -> Value {
    json!({"mediaType": media_type, "digest": format!("sha256:{}", sha256_hex(bytes)), "size": bytes.len()})
}

/// Writes the OCI archive and returns the manifest digest.
pub fn write_image(name: &str, binary: &Path, archive: &Path, epoch: u64) -> anyhow::Result<String> {
    let bin = std::fs::read(binary).with_context(|| format!("reading {}", binary.display()))?;
    let layer_tar = layer(name, &bin, epoch)?;
    let layer_gz = gzip(&layer_tar)?;
    let version = env!("CARGO_PKG_VERSION");
    let created = rfc3339(epoch);
    let labels = json!({
        "org.opencontainers.image.title": name,
        "org.opencontainers.image.description": format!("{name}: part of the LMCache Kubernetes operator"),
        "org.opencontainers.image.version": version,
        "org.opencontainers.image.created": created,
        "org.opencontainers.image.licenses": "Apache-2.0",
        "org.opencontainers.image.source": "https://github.com/LMCache/lmcache-operator",
    });
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "created": created,
        "config": {"User": "65532:65532", "Entrypoint": [format!("/{name}")], "Labels": labels,
                   "Env": ["PATH=/", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"]},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{}", sha256_hex(&layer_tar))]},
        "history": [{"created": created, "created_by": "cargo xtask image"}],
    }))?;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": descriptor("application/vnd.oci.image.config.v1+json", &config),
        "layers": [descriptor("application/vnd.oci.image.layer.v1.tar+gzip", &layer_gz)],
        "annotations": labels,
    }))?;
    let manifest_digest = format!("sha256:{}", sha256_hex(&manifest));
    let mut manifest_desc = descriptor("application/vnd.oci.image.manifest.v1+json", &manifest);
    manifest_desc["annotations"] = json!({"org.opencontainers.image.ref.name": version});
    let index = serde_json::to_vec(
        &json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [manifest_desc]}),
    )?;

    let mut blobs = vec![config, manifest, layer_gz];
    blobs.sort_by_key(|b| sha256_hex(b));
    let mut out = tar::Builder::new(Vec::new());
    tar_dir(&mut out, "blobs/", 0o755, epoch)?;
    tar_dir(&mut out, "blobs/sha256/", 0o755, epoch)?;
    for blob in &blobs {
        tar_entry(
            &mut out,
            &format!("blobs/sha256/{}", sha256_hex(blob)),
            blob,
            0o644,
            epoch,
        )?;
    }
    tar_entry(&mut out, "index.json", &index, 0o644, epoch)?;
    tar_entry(
        &mut out,
        "oci-layout",
        br#"{"imageLayoutVersion":"1.0.0"}"#,
        0o644,
        epoch,
    )?;
    std::fs::write(archive, out.into_inner()?)?;
    Ok(manifest_digest)
}

/// Checks the archives with skopeo (from Debian packages, installed when missing), extracts the
/// binary from the layer and runs `--version`, and rebuilds each archive to prove the digest is
/// reproducible.
pub fn verify(built: &[Built]) -> anyhow::Result<()> {
    ensure_skopeo()?;
    let scratch = root().join("target/images/verify");
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch)?;
    for image in built {
        check_user(image)?;
        run_version(image, &scratch.join(&image.name))?;
        let again = scratch.join(format!("{}-again.tar", image.name));
        let digest = write_image(
            &image.name,
            &binary_path(&image.name),
            &again,
            source_date_epoch(),
        )?;
        if digest != image.digest {
            bail!(
                "{}: rebuild gave {digest}, first build {}",
                image.name,
                image.digest
            );
        }
    }
    eprintln!("images verified: skopeo inspect/copy, binary --version, reproducible digests");
    Ok(())
}

/// `skopeo inspect` reads the archive's config, whose user is the nonroot one.
fn check_user(image: &Built) -> anyhow::Result<()> {
    let inspect = std::process::Command::new("skopeo")
        .args([
            "inspect",
            "--config",
            &format!("oci-archive:{}", image.archive.display()),
        ])
        .output()?;
    if !inspect.status.success() {
        bail!(
            "skopeo inspect {}: {}",
            image.name,
            String::from_utf8_lossy(&inspect.stderr)
        );
    }
    let config: Value = serde_json::from_slice(&inspect.stdout)?;
    if config["config"]["User"] != "65532:65532" {
        bail!("{}: image user is {}", image.name, config["config"]["User"]);
    }
    Ok(())
}

/// Copies the image to `dir` with skopeo, unpacks its layer and runs the binary's `--version`.
fn run_version(image: &Built, dir: &Path) -> anyhow::Result<()> {
    let status = std::process::Command::new("skopeo")
        .args([
            "copy",
            "--quiet",
            &format!("oci-archive:{}", image.archive.display()),
            &format!("dir:{}", dir.display()),
        ])
        .status()?;
    if !status.success() {
        bail!("skopeo copy {} failed", image.name);
    }
    let manifest: Value = serde_json::from_slice(&std::fs::read(dir.join("manifest.json"))?)?;
    let layer_digest = manifest["layers"][0]["digest"].as_str().context("no layer")?;
    let layer = dir.join(layer_digest.trim_start_matches("sha256:"));
    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(&rootfs)?;
    let gz = flate2::read::GzDecoder::new(std::fs::File::open(&layer)?);
    tar::Archive::new(gz).unpack(&rootfs)?;
    let version = std::process::Command::new(rootfs.join(&image.name))
        .arg("--version")
        .output()?;
    if !version.status.success() {
        bail!(
            "{} --version failed: {}",
            image.name,
            String::from_utf8_lossy(&version.stderr)
        );
    }
    eprintln!(
        "{} ({} bytes): {}",
        image.name,
        image.size,
        String::from_utf8_lossy(&version.stdout).trim()
    );
    Ok(())
}

fn ensure_skopeo() -> anyhow::Result<()> {
    if std::process::Command::new("skopeo")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return Ok(());
    }
    eprintln!("installing skopeo from Debian packages");
    run_env("apt-get", &["update", "-qq"], &[])?;
    run_env(
        "apt-get",
        &["install", "-y", "-qq", "skopeo"],
        &[("DEBIAN_FRONTEND", "noninteractive")],
    )
}

#[cfg(test)]
mod tests {
    use super::rfc3339;

    #[test]
    fn rfc3339_of_fixed_epochs() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_764_115_200), "2025-11-26T00:00:00Z");
        assert_eq!(rfc3339(951_782_400 + 3661), "2000-02-29T01:01:01Z");
    }
}
