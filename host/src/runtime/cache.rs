//! The compiled-plugin cache on disk, verified before it is loaded.
//!
//! A `<sha>.cwasm` file is native code: `Component::deserialize` trusts it
//! completely (it is `unsafe` by contract), and the file name is public (the
//! plugin's content hash). So every artifact this host writes gets a MAC next
//! to it (`<sha>.cwasm.mac`): HMAC-SHA256, under a random key kept in the
//! cache directory with owner-only permissions (`cache.key`, 0600, made on
//! first use), over the component's hash, the engine's compatibility hash
//! (wasmtime's version, the target and every compilation setting) and the
//! artifact's bytes. An artifact is loaded only from the bytes whose MAC
//! verified (read once, so the file cannot change between the check and the
//! load); anything else (flipped bytes, another plugin's artifact renamed,
//! an artifact of another wasmtime or engine configuration, a missing MAC)
//! is compiled again from the component and the cache entry rewritten.

use std::fs::OpenOptions;
use std::hash::{Hash, Hasher};
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use sha2::{Digest, Sha256};
use wasmtime::Engine;

/// Name of the MAC key file inside the cache directory.
const KEY_FILE: &str = "cache.key";
/// Bytes of the MAC key.
const KEY_LEN: usize = 32;
/// HMAC-SHA256's block size.
const BLOCK: usize = 64;
/// Separates this use of the key from any other (and versions the format).
const DOMAIN: &[u8] = b"sluice compiled plugin v1\0";

/// A cache directory this host may trust: its key and the engine's identity.
pub(crate) struct VerifiedCache {
    dir: PathBuf,
    key: [u8; KEY_LEN],
    /// SHA-256 of wasmtime's `precompile_compatibility_hash` of the engine.
    engine_id: [u8; 32],
}

/// Why a cached artifact was not used (it is compiled again).
#[derive(Debug, thiserror::Error)]
pub(crate) enum Rejected {
    #[error("no MAC file next to it")]
    NoMac,
    #[error("its MAC does not verify (changed, or written for another component, wasmtime or engine configuration)")]
    BadMac,
    #[error("{0:#}")]
    Io(anyhow::Error),
}

impl VerifiedCache {
    /// Opens (making them if needed) the cache directory and its key.
    pub(crate) fn open(dir: &Path, engine: &Engine) -> anyhow::Result<VerifiedCache> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let key = load_or_create_key(&dir.join(KEY_FILE))?;
        let mut hasher = ShaHasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(VerifiedCache { dir: dir.to_path_buf(), key, engine_id: hasher.0.finalize().into() })
    }

    /// Where the artifact of the component with hash `sha256` lives.
    pub(crate) fn artifact_path(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}.cwasm"))
    }

    fn mac_path(artifact: &Path) -> PathBuf {
        let mut name = artifact.as_os_str().to_owned();
        name.push(".mac");
        PathBuf::from(name)
    }

    /// The artifact's bytes if there is one and its MAC verifies; `Ok(None)`
    /// when there is no artifact at all.
    pub(crate) fn read(&self, sha256: &str) -> Result<Option<Vec<u8>>, Rejected> {
        let path = self.artifact_path(sha256);
        let artifact = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Rejected::Io(anyhow::Error::from(e).context(format!("reading {}", path.display())))),
        };
        let mac_hex = match std::fs::read_to_string(Self::mac_path(&path)) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Rejected::NoMac),
            Err(e) => return Err(Rejected::Io(anyhow::Error::from(e).context("reading the MAC file"))),
        };
        let given = hex::decode(mac_hex.trim()).map_err(|_| Rejected::BadMac)?;
        if !constant_time_eq(&given, &self.mac(sha256, &artifact)) {
            return Err(Rejected::BadMac);
        }
        Ok(Some(artifact))
    }

    /// Writes the artifact and its MAC (each through a rename, so a reader
    /// sees whole files; a reader between the two renames finds a MAC that
    /// does not verify and compiles again).
    pub(crate) fn write(&self, sha256: &str, artifact: &[u8]) -> anyhow::Result<()> {
        let path = self.artifact_path(sha256);
        let mac = hex::encode(self.mac(sha256, artifact));
        write_atomic(&path, artifact)?;
        write_atomic(&Self::mac_path(&path), mac.as_bytes())
    }

    /// The MAC of what binds the artifact: the component's hash, the engine
    /// and the bytes.
    fn mac(&self, sha256: &str, artifact: &[u8]) -> [u8; 32] {
        let len = (sha256.len() as u64).to_le_bytes();
        hmac_sha256(&self.key, &[DOMAIN, &len, sha256.as_bytes(), &self.engine_id, artifact])
    }
}

/// HMAC-SHA256 (RFC 2104) of the concatenated `parts`, for a key of at most
/// one block (ours is 32 bytes).
fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    debug_assert!(key.len() <= BLOCK);
    let mut ipad = [0x36u8; BLOCK];
    let mut opad = [0x5cu8; BLOCK];
    for (i, k) in key.iter().enumerate() {
        ipad[i] ^= k;
        opad[i] ^= k;
    }
    let mut inner = Sha256::new();
    inner.update(ipad);
    for part in parts {
        inner.update(part);
    }
    let mut outer = Sha256::new();
    outer.update(opad);
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// Feeds `Hash` into SHA-256 (wasmtime's compatibility hash is only `Hash`).
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn finish(&self) -> u64 {
        0 // never asked: the digest is taken from the inner state
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming into {}", path.display()))
}

/// Reads the key, or makes one: written to a private temporary file, then
/// hard-linked into place so two processes starting together agree on one.
fn load_or_create_key(path: &Path) -> anyhow::Result<[u8; KEY_LEN]> {
    if !path.exists() {
        let key: [u8; KEY_LEN] = rand::random();
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let mut file = private_create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        file.write_all(&key).and_then(|()| file.sync_all()).with_context(|| format!("writing {}", tmp.display()))?;
        let linked = std::fs::hard_link(&tmp, path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => return Ok(key),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(anyhow::Error::from(e).context(format!("installing {}", path.display()))),
        }
    }
    let mut file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    check_private(&file, path)?;
    let mut key = [0u8; KEY_LEN];
    file.read_exact(&mut key).with_context(|| format!("{} is not a {KEY_LEN}-byte key", path.display()))?;
    Ok(key)
}

#[cfg(unix)]
fn private_create(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let _ = std::fs::remove_file(path);
    OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)
}

#[cfg(not(unix))]
fn private_create(path: &Path) -> std::io::Result<std::fs::File> {
    let _ = std::fs::remove_file(path);
    OpenOptions::new().write(true).create_new(true).open(path)
}

/// A key others may read or write cannot vouch for anything.
#[cfg(unix)]
fn check_private(file: &std::fs::File, path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = file.metadata().with_context(|| format!("reading the permissions of {}", path.display()))?;
    // SAFETY: `geteuid` has no preconditions; through std it is not exposed.
    let me = unsafe { libc_geteuid() };
    anyhow::ensure!(
        meta.mode() & 0o077 == 0 && meta.uid() == me,
        "{} must be owned by this user with permissions 0600 (it is {:o}, owner {}); fix it or delete it to make a new one",
        path.display(),
        meta.mode() & 0o777,
        meta.uid()
    );
    Ok(())
}

#[cfg(unix)]
extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

#[cfg(not(unix))]
fn check_private(_file: &std::fs::File, _path: &Path) -> anyhow::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test case 2 of RFC 4231 (a key shorter than a block), split in parts.
        let mac = hmac_sha256(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        assert_eq!(hex::encode(mac), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }

    #[test]
    fn the_mac_binds_key_component_and_bytes() {
        let engine = Engine::default();
        let dir = tempfile::tempdir().unwrap();
        let cache = VerifiedCache::open(dir.path(), &engine).unwrap();
        let a = cache.mac("aa", b"bytes");
        assert_ne!(a, cache.mac("ab", b"bytes"));
        assert_ne!(a, cache.mac("aa", b"bytez"));
        let other = tempfile::tempdir().unwrap();
        assert_ne!(a, VerifiedCache::open(other.path(), &engine).unwrap().mac("aa", b"bytes"));
    }

    #[cfg(unix)]
    #[test]
    fn the_key_is_private_and_kept() {
        use std::os::unix::fs::PermissionsExt as _;
        let engine = Engine::default();
        let dir = tempfile::tempdir().unwrap();
        let first = VerifiedCache::open(dir.path(), &engine).unwrap();
        let mode = std::fs::metadata(dir.path().join(KEY_FILE)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let second = VerifiedCache::open(dir.path(), &engine).unwrap();
        assert_eq!(first.key, second.key);
        std::fs::set_permissions(dir.path().join(KEY_FILE), std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = VerifiedCache::open(dir.path(), &engine).err().unwrap();
        assert!(err.to_string().contains("0600"), "{err:#}");
    }
}
