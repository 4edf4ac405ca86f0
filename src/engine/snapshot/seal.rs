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
//! A key file holds 64 hex digits and must be readable by its owner only (like ssh's keys); the
//! default one is created (mode 0600) with 32 random bytes when it does not exist. Copy it to
//! another machine (`install -m 600`), or set `VEKTER_KEY` there, to vouch for the files this
//! one built. A process that has no usable key loads no stored snapshot (every table is
//! searched through its stand-in) and cannot save one: creating, rebuilding or optimizing fails
//! with the reason, rather than storing a snapshot no other process could load.
//!
//! Messages name where the key comes from (`VEKTER_KEY`, `VEKTER_KEY_FILE`, the config folder),
//! never its path: they can reach strangers' SQL (`faiss_indexes.state`).

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use once_cell::sync::OnceCell;

/// Where this process's key came from, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    Env,
    EnvFile,
    ConfigFolder,
}

impl Source {
    fn name(self) -> &'static str {
        match self {
            Source::Env => "VEKTER_KEY",
            Source::EnvFile => "the file VEKTER_KEY_FILE names",
            Source::ConfigFolder => "~/.config/vekter/snapshot.key",
        }
    }
}

/// The key snapshots are sealed with.
pub(crate) struct SealKey {
    key: [u8; 32],
    /// A public name of the key (a hash of it): which key sealed a snapshot, in messages.
    pub(crate) id: String,
    pub(crate) source: Source,
}

static KEY: OnceCell<Result<SealKey, String>> = OnceCell::new();

/// Bytes a key file may hold at most (64 hex digits, a newline, some slack).
const KEY_FILE_MAX: u64 = 256;
/// Domain separation: a seal is a MAC of a vekter snapshot of this format, nothing else.
const CONTEXT: &[u8] = b"vekter snapshot seal v1\0";

/// This process's key, read (or created) once; why there is none.
pub(crate) fn key() -> Result<&'static SealKey, &'static str> {
    KEY.get_or_init(|| find_key().map(|(key, source)| SealKey::new(key, source)))
        .as_ref()
        .map_err(String::as_str)
}

/// Use `key` for this process (fuzzing harnesses and tests, before any seal is made).
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn use_key(key: [u8; 32]) {
    let _ = KEY.set(Ok(SealKey::new(key, Source::Env)));
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

    /// Which key, from where, for messages.
    pub(crate) fn describe(&self) -> String {
        format!("key {} (from {})", self.id, self.source.name())
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
    if let Some(hex) = std::env::var_os("VEKTER_KEY").filter(|v| !v.is_empty()) {
        return parse_key(&hex.to_string_lossy())
            .map(|k| (k, Source::Env))
            .ok_or_else(|| "VEKTER_KEY is not 64 hex digits".to_string());
    }
    let (path, source) = match std::env::var_os("VEKTER_KEY_FILE").filter(|v| !v.is_empty()) {
        Some(p) => (PathBuf::from(p), Source::EnvFile),
        None => (
            default_path().ok_or("there is no HOME or XDG_CONFIG_HOME to keep a key in")?,
            Source::ConfigFolder,
        ),
    };
    let create = source == Source::ConfigFolder;
    read_or_create(&path, create)
        .map(|k| (k, source))
        .map_err(|why| format!("{}: {why}", source.name()))
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
    if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut key = [0u8; 32];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(key)
}

extern "C" {
    fn geteuid() -> u32;
}

/// The key in the file at `path`, `None` when there is no file. Like ssh, a key file others can
/// read or write, or that another user owns, is refused: they could seal snapshots with it.
fn read_key_file(path: &Path) -> Result<Option<[u8; 32]>, String> {
    let file = match fs::OpenOptions::new()
        .read(true)
        .custom_flags(0o400_000) // O_NOFOLLOW
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot be read ({})", e.kind())),
    };
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot be read ({})", e.kind()))?;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { geteuid() };
    if !meta.is_file() || meta.uid() != me {
        return Err("is not a file of this user's own".to_string());
    }
    if meta.mode() & 0o077 != 0 {
        return Err(format!(
            "other users may read or write it (mode {:o}): chmod 600 it",
            meta.mode() & 0o777
        ));
    }
    let mut text = String::new();
    file.take(KEY_FILE_MAX)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot be read ({})", e.kind()))?;
    parse_key(&text)
        .map(Some)
        .ok_or_else(|| "does not hold 64 hex digits".to_string())
}

/// Read the key at `path`, or (`create`) create it there: a new key is written to a file of its
/// own and linked into place, so processes starting together agree on one key.
fn read_or_create(path: &Path, create: bool) -> Result<[u8; 32], String> {
    if let Some(key) = read_key_file(path)? {
        return Ok(key);
    }
    if !create {
        return Err("does not exist".to_string());
    }
    let fail = |what: &str, e: std::io::Error| format!("cannot {what} ({})", e.kind());
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(dir) = dir {
        if !dir.exists() {
            fs::create_dir_all(dir).map_err(|e| fail("create its folder", e))?;
            // Only the folder made here (`vekter`): never one the user had.
            let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
        }
    }
    let key = os_random().map_err(|e| fail("read /dev/urandom", e))?;
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    let nonce: String = os_random()
        .map_err(|e| fail("read /dev/urandom", e))?
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect();
    let tmp = path.with_extension(format!("tmp-{}-{nonce}", std::process::id()));
    let written = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(format!("{hex}\n").as_bytes()).and(f.sync_all()));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(fail("be created", e));
    }
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            if let Some(dir) = dir {
                let _ = fs::File::open(dir).and_then(|d| d.sync_all());
            }
            Ok(key)
        }
        // Another process created it first: use theirs.
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            read_key_file(path)?.ok_or_else(|| "vanished as it was created".to_string())
        }
        Err(e) => Err(fail("be created", e)),
    }
}

fn os_random() -> std::io::Result<[u8; 32]> {
    let mut key = [0u8; 32];
    fs::File::open("/dev/urandom")?.read_exact(&mut key)?;
    Ok(key)
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
        let had = dir.path().join("had");
        fs::create_dir(&had).unwrap();
        fs::set_permissions(&had, fs::Permissions::from_mode(0o755)).unwrap();
        let k = read_or_create(&had.join("snapshot.key"), true).unwrap();
        assert_eq!(read_key_file(&had.join("snapshot.key")).unwrap(), Some(k));
        // The folder the user had is left as it was.
        assert_eq!(
            fs::metadata(&had).unwrap().permissions().mode() & 0o777,
            0o755
        );
        let path = dir.path().join("sub").join("snapshot.key");
        assert!(read_or_create(&path, false)
            .unwrap_err()
            .contains("does not exist"));
        let k = read_or_create(&path, true).unwrap();
        assert_eq!(read_or_create(&path, true).unwrap(), k);
        assert_eq!(read_or_create(&path, false).unwrap(), k);
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let folder = fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(folder & 0o777, 0o700);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(read_or_create(&path, true)
            .unwrap_err()
            .contains("chmod 600"));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(&path, "not a key").unwrap();
        assert!(read_or_create(&path, true)
            .unwrap_err()
            .contains("64 hex digits"));
        assert_eq!(parse_key(&"ab".repeat(32)), Some([0xab; 32]));
        assert_eq!(parse_key(&"ab".repeat(31)), None);
        assert_eq!(parse_key(&format!("+f{}", "ab".repeat(31))), None);
    }
}
