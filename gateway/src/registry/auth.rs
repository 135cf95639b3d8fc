//! JT808 auth codes: handed out at registration, checked at authentication
//! (docs/protocols/jt808.md §5, docs/configuration.md).
//!
//! A code is 128 random bits as 32 hex digits. With a file (`jt808_auth_file`), each code is
//! appended as a line `DEVICE_ID<TAB>CODE` and synced *before* the 0x8100 that carries it is
//! sent, so a terminal never holds a code the gateway could forget; the file is read back at
//! start (the last line for a terminal wins). The same file enrolls terminals that
//! authenticate with a code they got elsewhere: the operator adds their lines. Without a
//! file the codes live in memory, and terminals register again after a restart.
//!
//! In a cluster the codes are shared ([`SharedCodes`], the cluster's KV store): a code is
//! kept there before it is sent, and every node's store learns every code from it, so a
//! terminal authenticates on whichever node it reaches. The file then only enrolls: its
//! codes are added to the cluster's for terminals that have none there.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use ring::rand::{SecureRandom, SystemRandom};
use tracing::{info, warn};
use trackgate_codecs::jt808::{AuthCodes, Issued};

/// A listener's JT808 auth codes.
pub struct AuthStore {
    codes: Mutex<HashMap<String, String>>,
    /// Where codes are kept, if anywhere.
    file: Option<(PathBuf, Mutex<File>)>,
    /// The cluster's codes, once this store shares them (then the file is not written).
    shared: OnceLock<Arc<dyn SharedCodes>>,
    random: SystemRandom,
}

/// Codes kept where several gateways see them (the cluster's KV store). Its owner tells
/// each store sharing it what any node keeps or voids ([`AuthStore::learned`]).
pub trait SharedCodes: Send + Sync {
    /// Keeps `code` for the terminal unless one is kept already (`Ok(false)`); returns once
    /// it is kept, so the 0x8100 that carries it may go. Called on a shard's thread.
    fn create(&self, device_id: &str, code: &str) -> io::Result<bool>;
    /// Voids the terminal's code (it deregistered).
    fn delete(&self, device_id: &str);
}

impl std::fmt::Debug for AuthStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // No codes: they are the terminals' credentials.
        f.debug_struct("AuthStore").field("file", &self.file.as_ref().map(|(p, _)| p)).finish_non_exhaustive()
    }
}

impl AuthStore {
    /// Codes in memory only.
    pub fn in_memory() -> Arc<AuthStore> {
        Arc::new(AuthStore::with(HashMap::new(), None))
    }

    /// Codes kept in `path` (created, readable by its owner only), with those it holds.
    pub fn open(path: &Path) -> io::Result<Arc<AuthStore>> {
        let mut options = OpenOptions::new();
        options.create(true).append(true).read(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path)?;
        let mut codes = HashMap::new();
        for (n, line) in BufReader::new(&file).lines().enumerate() {
            let line = line?;
            match line.split_once('\t') {
                Some((id, code)) if !id.is_empty() && !code.trim().is_empty() => {
                    codes.insert(id.to_owned(), code.trim().to_owned());
                }
                // A deregistration: the terminal's code is void.
                Some((id, _)) if !id.is_empty() => {
                    codes.remove(id);
                }
                // A line cut short by a crash, or a mistake in an enrollment: not a code.
                _ if line.trim().is_empty() || line.starts_with('#') => {}
                _ => warn!(file = %path.display(), line = n + 1, "not DEVICE_ID<TAB>CODE; skipped"),
            }
        }
        // A last line cut short (a crash mid-append) is ended, so the next code starts a line.
        if ends_torn(path)? {
            file.write_all(b"\n")?;
        }
        info!(file = %path.display(), terminals = codes.len(), "JT808 auth codes read back");
        Ok(Arc::new(AuthStore::with(codes, Some((path.to_owned(), Mutex::new(file))))))
    }

    fn with(codes: HashMap<String, String>, file: Option<(PathBuf, Mutex<File>)>) -> AuthStore {
        AuthStore { codes: Mutex::new(codes), file, shared: OnceLock::new(), random: SystemRandom::new() }
    }

    /// From now on codes are kept in `shared`, and this store knows only what it is told
    /// there ([`AuthStore::learned`]); returns the codes it held (its file's), for the
    /// cluster to enroll. Called once, before the listeners serve.
    pub fn share(&self, shared: Arc<dyn SharedCodes>) -> Vec<(String, String)> {
        let _ = self.shared.set(shared);
        self.codes().drain().collect()
    }

    /// What the shared store holds for a terminal now: its code, or none (voided).
    pub fn learned(&self, device_id: &str, code: Option<&str>) {
        let mut codes = self.codes();
        match code {
            Some(code) => codes.insert(device_id.to_owned(), code.to_owned()),
            None => codes.remove(device_id),
        };
    }

    fn codes(&self) -> MutexGuard<'_, HashMap<String, String>> {
        self.codes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends `DEVICE_ID<TAB>CODE` and syncs it.
    fn append(&self, device_id: &str, code: &str) -> io::Result<()> {
        let Some((_, file)) = &self.file else { return Ok(()) };
        let mut file = file.lock().unwrap_or_else(|p| p.into_inner());
        file.write_all(format!("{device_id}\t{code}\n").as_bytes())?;
        file.sync_data()
    }

    /// 128 random bits as hex.
    fn new_code(&self) -> Option<String> {
        let mut bytes = [0u8; 16];
        self.random.fill(&mut bytes).ok()?;
        Some(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }
}

impl AuthStore {
    /// A registration in a cluster: the shared store's create decides, cluster-wide, whether
    /// the terminal already has a code. Not under the lock: the round trip would stall the
    /// other shards' checks.
    fn issue_shared(&self, shared: &dyn SharedCodes, device_id: &str) -> Issued {
        if self.codes().contains_key(device_id) {
            return Issued::AlreadyRegistered;
        }
        let Some(code) = self.new_code() else { return Issued::Unavailable };
        match shared.create(device_id, &code) {
            Ok(true) => {
                self.learned(device_id, Some(&code));
                Issued::Code(code)
            }
            Ok(false) => Issued::AlreadyRegistered,
            Err(e) => {
                warn!(error = %e, "a JT808 auth code could not be kept in the cluster; the registration is not answered");
                Issued::Unavailable
            }
        }
    }
}

/// Whether the file's last byte is not a line end.
fn ends_torn(path: &Path) -> io::Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = File::open(path)?;
    if f.metadata()?.len() == 0 {
        return Ok(false);
    }
    f.seek(SeekFrom::End(-1))?;
    let mut last = [0u8; 1];
    f.read_exact(&mut last)?;
    Ok(last[0] != b'\n')
}

impl AuthCodes for AuthStore {
    /// A new code, kept before it is handed out, for a terminal that has none. A
    /// registration blocks its shard for the sync; registrations are rare beside the frames
    /// that follow them.
    fn issue(&self, device_id: &str) -> Issued {
        // A terminal id with a tab or a line break would corrupt the file: no code for it.
        if device_id.contains(['\t', '\n', '\r']) {
            return Issued::Unavailable;
        }
        if let Some(shared) = self.shared.get() {
            return self.issue_shared(shared.as_ref(), device_id);
        }
        // Held across the append, so two registrations of one terminal cannot both win.
        let mut codes = self.codes();
        if codes.contains_key(device_id) {
            return Issued::AlreadyRegistered;
        }
        let Some(code) = self.new_code() else { return Issued::Unavailable };
        if let Err(e) = self.append(device_id, &code) {
            warn!(error = %e, "a JT808 auth code could not be kept; the registration is not answered");
            return Issued::Unavailable;
        }
        codes.insert(device_id.to_owned(), code.clone());
        Issued::Code(code)
    }

    /// Noted in the file as the terminal with an empty code.
    fn revoke(&self, device_id: &str) {
        let mut codes = self.codes();
        if let Some(shared) = self.shared.get() {
            codes.remove(device_id);
            shared.delete(device_id);
            return;
        }
        if codes.remove(device_id).is_some() {
            if let Err(e) = self.append(device_id, "") {
                warn!(error = %e, "a JT808 deregistration could not be noted in the auth file");
            }
        }
    }

    /// Compared in constant time: the code is the terminal's credential.
    fn check(&self, device_id: &str, code: &[u8]) -> bool {
        let codes = self.codes();
        let Some(known) = codes.get(device_id) else { return false };
        let known = known.as_bytes();
        known.len() == code.len() && known.iter().zip(code).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_random_kept_before_use_and_read_back() {
        let path = std::env::temp_dir().join(format!("trackgate-auth-{}.tsv", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let store = AuthStore::open(&path).unwrap();
        let code = |issued| match issued {
            Issued::Code(c) => c,
            other => panic!("{other:?}"),
        };
        let a = code(store.issue("14130567872"));
        let b = code(store.issue("14130567873"));
        assert_eq!(store.issue("14130567872"), Issued::AlreadyRegistered, "no second code");
        assert!(a.len() == 32 && a.bytes().all(|c| c.is_ascii_hexdigit()) && a != b, "{a} {b}");
        assert!(store.check("14130567872", a.as_bytes()));
        assert!(!store.check("14130567872", b.as_bytes()));
        assert!(!store.check("14130567872", b"14130567872"));
        assert!(!store.check("19999999999", a.as_bytes()));
        assert!(!format!("{store:?}").contains(&a));
        // An operator enrolls a terminal with a code it got elsewhere; a torn line is skipped.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"13800138000\tAUTH1234\n14130567874").unwrap();
        drop(f);
        let again = AuthStore::open(&path).unwrap();
        assert!(again.check("14130567872", a.as_bytes()) && again.check("14130567873", b.as_bytes()));
        assert!(again.check("13800138000", b"AUTH1234"));
        assert!(!again.check("14130567874", b""));
        assert_eq!(again.issue("bad\tid"), Issued::Unavailable);
        // After the torn line, a new code is a line of its own.
        let c = code(again.issue("14130567875"));
        again.revoke("14130567873");
        let last = AuthStore::open(&path).unwrap();
        assert!(last.check("14130567875", c.as_bytes()));
        assert!(!last.check("14130567873", b.as_bytes()), "revoked for good");
        assert!(matches!(last.issue("14130567873"), Issued::Code(_)));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        std::fs::remove_file(&path).unwrap();
    }
}
