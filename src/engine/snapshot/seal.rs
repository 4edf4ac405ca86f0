//! Snapshot seals: a keyed BLAKE3 MAC over the stored payload, with a key held outside the
//! database file (SECURITY.md, "Database files from strangers").
//!
//! FAISS's reader trusts the bytes it is given, so vekter hands it only bytes that a holder of
//! the key wrote: a snapshot whose seal does not verify is refused before FAISS sees a byte of
//! it, and the index is rebuilt from the content table instead (`persist::load`). Whoever can
//! write the database file can recompute the checksum, but not the seal.
//!
//! The key, in this order:
//! 1. `VEKTER_KEY`: 64 hex digits (a deployment's secret, e.g. from its secret store);
//! 2. the file `VEKTER_KEY_FILE` names;
//! 3. `$XDG_CONFIG_HOME/vekter/snapshot.key`, else `~/.config/vekter/snapshot.key`.
//!
//! A key file holds 64 hex digits; one that does not exist is created (mode 0600) with 32
//! random bytes. Copy it to another machine (or set `VEKTER_KEY` there) to vouch for the files
//! this one built. When no key can be read or created, the process uses a random key of its
//! own: its searches work (other processes' snapshots are rebuilt in memory) and what it saves
//! only it can load.

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use once_cell::sync::OnceCell;

/// Where this process's key came from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    Env,
    File(PathBuf),
    /// A random key of this process only, and why no other could be had.
    Ephemeral(String),
}

/// The key snapshots are sealed with.
pub(crate) struct SealKey {
    key: [u8; 32],
    /// A public name of the key (a hash of it): which key sealed a snapshot, in messages.
    pub(crate) id: String,
    pub(crate) source: Source,
}

static KEY: OnceCell<SealKey> = OnceCell::new();

/// Bytes a key file may hold at most (64 hex digits, a newline, some slack).
const KEY_FILE_MAX: u64 = 256;
/// Domain separation: a seal is a MAC of a vekter snapshot of this format, nothing else.
const CONTEXT: &[u8] = b"vekter snapshot seal v1\0";

/// This process's key: read (or created) once.
pub(crate) fn key() -> &'static SealKey {
    KEY.get_or_init(|| {
        let (key, source) = match find_key() {
            Ok(found) => found,
            Err(why) => (random_key(), Source::Ephemeral(why)),
        };
        SealKey::new(key, source)
    })
}

/// Use `key` for this process (fuzzing harnesses and tests, before any seal is made).
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn use_key(key: [u8; 32]) {
    let _ = KEY.set(SealKey::new(key, Source::Env));
}

impl SealKey {
    pub(crate) fn new(key: [u8; 32], source: Source) -> SealKey {
        let id = blake3::keyed_hash(&key, b"vekter key id").to_hex()[..16].to_string();
        SealKey { key, id, source }
    }

    /// A MAC computed piece by piece over a payload of `len` bytes.
    pub(crate) fn sealer(&self, len: usize) -> Sealer {
        let mut hasher = blake3::Hasher::new_keyed(&self.key);
        hasher.update(CONTEXT);
        hasher.update(&(len as u64).to_le_bytes());
        Sealer(hasher)
    }

    /// The seal of `payload` (hex).
    pub(crate) fn seal(&self, payload: &[u8]) -> String {
        let mut sealer = self.sealer(payload.len());
        sealer.update(payload);
        sealer.finish().to_hex().to_string()
    }

    /// Where the key is, for messages.
    pub(crate) fn describe(&self) -> String {
        match &self.source {
            Source::Env => format!("key {} (from VEKTER_KEY)", self.id),
            Source::File(path) => format!("key {} (from {})", self.id, path.display()),
            Source::Ephemeral(why) => {
                format!("key {} (this process's own: {why})", self.id)
            }
        }
    }
}

/// See [`SealKey::sealer`].
pub(crate) struct Sealer(blake3::Hasher);

impl Sealer {
    pub(crate) fn update(&mut self, piece: &[u8]) {
        self.0.update(piece);
    }

    pub(crate) fn finish(self) -> blake3::Hash {
        self.0.finalize()
    }
}

/// `seal` (hex) against what the key computed: constant-time.
pub(crate) fn matches(computed: &blake3::Hash, seal: &str) -> bool {
    blake3::Hash::from_hex(seal).is_ok_and(|stored| stored == *computed)
}

fn find_key() -> Result<([u8; 32], Source), String> {
    if let Some(hex) = std::env::var_os("VEKTER_KEY") {
        let hex = hex.to_string_lossy();
        return parse_key(&hex)
            .map(|k| (k, Source::Env))
            .ok_or_else(|| "VEKTER_KEY is not 64 hex digits".to_string());
    }
    let path = match std::env::var_os("VEKTER_KEY_FILE") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => default_path().ok_or("no HOME or XDG_CONFIG_HOME to keep a key in")?,
    };
    read_or_create(&path).map(|k| (k, Source::File(path)))
}

fn default_path() -> Option<PathBuf> {
    let base = match std::env::var_os("XDG_CONFIG_HOME") {
        Some(x) if Path::new(&x).is_absolute() => PathBuf::from(x),
        _ => PathBuf::from(std::env::var_os("HOME").filter(|h| !h.is_empty())?).join(".config"),
    };
    Some(base.join("vekter").join("snapshot.key"))
}

fn parse_key(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    if text.len() != 64 {
        return None;
    }
    let mut key = [0u8; 32];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(key)
}

fn read_key_file(path: &Path) -> std::io::Result<Option<[u8; 32]>> {
    let file = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut text = String::new();
    file.take(KEY_FILE_MAX).read_to_string(&mut text)?;
    match parse_key(&text) {
        Some(k) => Ok(Some(k)),
        None => Err(std::io::Error::new(
            ErrorKind::InvalidData,
            "it does not hold 64 hex digits",
        )),
    }
}

/// Read the key at `path`, or create it there: a new key is written to a file of its own and
/// linked into place, so processes starting together agree on one key.
fn read_or_create(path: &Path) -> Result<[u8; 32], String> {
    let fail = |what: &str, e: std::io::Error| format!("cannot {what} {}: {e}", path.display());
    if let Some(key) = read_key_file(path).map_err(|e| fail("read", e))? {
        return Ok(key);
    }
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(dir) = dir {
        fs::create_dir_all(dir).map_err(|e| fail("create the folder of", e))?;
        let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
    }
    let key = os_random().map_err(|e| fail("make a random key for", e))?;
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let written = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(format!("{hex}\n").as_bytes()).and(f.sync_all()));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(fail("create", e));
    }
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(key),
        // Another process created it first: use theirs.
        Err(e) if e.kind() == ErrorKind::AlreadyExists => read_key_file(path)
            .map_err(|e| fail("read", e))?
            .ok_or_else(|| format!("{} vanished", path.display())),
        Err(e) => Err(fail("create", e)),
    }
}

fn os_random() -> std::io::Result<[u8; 32]> {
    let mut key = [0u8; 32];
    fs::File::open("/dev/urandom")?.read_exact(&mut key)?;
    Ok(key)
}

/// A key for this process only, when no lasting one can be had.
fn random_key() -> [u8; 32] {
    os_random().unwrap_or_else(|_| {
        // No /dev/urandom (a chroot): what this process alone knows of itself.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let mut h = blake3::Hasher::new();
        h.update(&now.as_nanos().to_le_bytes());
        h.update(&std::process::id().to_le_bytes());
        h.update(&(&now as *const _ as usize).to_le_bytes());
        *h.finalize().as_bytes()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_verify_only_with_their_key() {
        let a = SealKey::new([1; 32], Source::Env);
        let b = SealKey::new([2; 32], Source::Env);
        let payload: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let seal = a.seal(&payload);
        let mut s = a.sealer(payload.len());
        for piece in payload.chunks(999) {
            s.update(piece);
        }
        assert!(matches(&s.finish(), &seal));
        let mut s = b.sealer(payload.len());
        s.update(&payload);
        assert!(!matches(&s.finish(), &seal));
        let mut damaged = payload.clone();
        damaged[5000] ^= 1;
        assert_ne!(a.seal(&damaged), seal);
        assert_ne!(a.seal(&payload[..9999]), seal);
        for bad in ["", "zz", &seal[..63]] {
            let mut s = a.sealer(payload.len());
            s.update(&payload);
            assert!(!matches(&s.finish(), bad));
        }
        assert_ne!(a.id, b.id);
    }

    #[test]
    fn key_files_are_created_once_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("snapshot.key");
        let k = read_or_create(&path).unwrap();
        assert_eq!(read_or_create(&path).unwrap(), k);
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        fs::write(&path, "not a key").unwrap();
        assert!(read_or_create(&path).unwrap_err().contains("64 hex digits"));
        assert_eq!(parse_key(&"ab".repeat(32)), Some([0xab; 32]));
        assert_eq!(parse_key(&"ab".repeat(31)), None);
    }
}
