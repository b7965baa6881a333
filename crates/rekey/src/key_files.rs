//! Where the two key rings come from (SPEC §12), and their files. A ring is configured
//! (`REKEY_KEYS__CODE_HMAC`, `REKEY_KEYS__OUTBOX`, their `_FILE` forms or the TOML file) or
//! lives in its file in the data directory, generated on first start. A file is written whole
//! or not at all — a private temporary file renamed over the old one — under a lock, so a
//! `rekey keys rotate` and a first start cannot interleave. `serve` re-reads the files while it
//! runs ([`Reloader`]): a rotation needs no restart. The file format is
//! [`rekey_core::crypto::KeyFile`]'s.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use rekey_core::crypto::{KeyFile, KeyRing, LiveRing};
use rekey_core::flows::Deps;
use rekey_core::ports::{Clock, Random};
use secrecy::{ExposeSecret, SecretString};

use crate::config::Settings;

/// One of the two rings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ring {
    /// Signs and verifies reset codes (the `reset_codes.key_id` column).
    CodeHmac,
    /// Encrypts and decrypts outbox bodies (the `outbox.key_id` column).
    Outbox,
}

impl Ring {
    pub const ALL: [Self; 2] = [Self::CodeHmac, Self::Outbox];

    /// The name the CLI uses.
    pub fn name(self) -> &'static str {
        match self {
            Self::CodeHmac => "code-hmac",
            Self::Outbox => "outbox",
        }
    }

    /// The file in the data directory.
    pub fn file_name(self) -> &'static str {
        match self {
            Self::CodeHmac => "code_hmac.keys",
            Self::Outbox => "outbox.keys",
        }
    }

    /// The configuration key that holds the ring instead of the file.
    pub fn env(self) -> &'static str {
        match self {
            Self::CodeHmac => "REKEY_KEYS__CODE_HMAC",
            Self::Outbox => "REKEY_KEYS__OUTBOX",
        }
    }

    fn configured(self, settings: &Settings) -> Option<&SecretString> {
        match self {
            Self::CodeHmac => settings.keys.code_hmac.as_ref(),
            Self::Outbox => settings.keys.outbox.as_ref(),
        }
    }

    fn live(self, deps: &Deps) -> &LiveRing {
        match self {
            Self::CodeHmac => deps.codes.ring(),
            Self::Outbox => deps.sealer.ring(),
        }
    }
}

/// Where a ring comes from.
pub enum Source<'a> {
    Configured(&'a SecretString),
    File(PathBuf),
}

pub fn source(settings: &Settings, ring: Ring) -> Source<'_> {
    match ring.configured(settings) {
        Some(spec) => Source::Configured(spec),
        None => Source::File(settings.data_dir.join(ring.file_name())),
    }
}

/// The ring to start with: the configured one, or the one in its file, generated there on
/// first start.
pub fn load_or_generate(
    settings: &Settings,
    ring: Ring,
    rng: &dyn Random,
    clock: &dyn Clock,
) -> anyhow::Result<KeyRing> {
    let path = match source(settings, ring) {
        Source::Configured(spec) => {
            return KeyRing::parse(spec.expose_secret())
                .with_context(|| format!("invalid key ring in {}", ring.env()));
        }
        Source::File(path) => path,
    };
    if let Some(file) = read(&path)? {
        return Ok(file.ring().clone());
    }
    let data_dir = &settings.data_dir;
    rekey_store::create_private_dir(data_dir)
        .with_context(|| format!("creating data directory {}", data_dir.display()))?;
    let _lock = lock(data_dir)?;
    // Another process may have generated it while this one waited for the lock.
    if let Some(file) = read(&path)? {
        return Ok(file.ring().clone());
    }
    let file = KeyFile::generate(rng, clock.now())?;
    write_atomically(&path, &file.expose_text())?;
    tracing::info!(path = %path.display(), "generated a new key ring");
    Ok(file.ring().clone())
}

/// The ring file at `path`, or `None` when there is none yet.
pub fn read(path: &Path) -> anyhow::Result<Option<KeyFile>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => {
            return Err(err).with_context(|| format!("reading key ring {}", path.display()))
        }
    };
    KeyFile::parse(&text)
        .map(Some)
        .with_context(|| format!("invalid key ring in {}", path.display()))
}

/// Puts a new key in front of the ring in `path`; returns its id. The file must exist (a
/// missing one more likely means a wrong data directory than a wish for a first key).
pub fn rotate_file(path: &Path, rng: &dyn Random, clock: &dyn Clock) -> anyhow::Result<String> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let _lock = lock(dir)?;
    let mut file = read(path)?.with_context(|| {
        format!(
            "no key ring at {}: `rekey serve` generates it on first start; \
             is REKEY_DATA_DIR the server's data directory?",
            path.display()
        )
    })?;
    let id = file.rotate(rng, clock.now());
    write_atomically(path, &file.expose_text())?;
    Ok(id)
}

/// An exclusive lock on `keys.lock` in the data directory, held until the file is dropped.
fn lock(dir: &Path) -> anyhow::Result<File> {
    let path = dir.join("keys.lock");
    let file = private_options()
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    file.lock()
        .with_context(|| format!("locking {}", path.display()))?;
    Ok(file)
}

fn private_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.write(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}

/// Writes `text` to a private temporary file beside `path`, flushes it to disk and renames it
/// over `path`: a reader (the running server) sees the old ring or the new one, never a part.
fn write_atomically(path: &Path, text: &SecretString) -> anyhow::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("keys");
    let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    // Under the lock no one else writes this name; a leftover of a crashed run goes.
    let _ = std::fs::remove_file(&temp);
    let written = (|| {
        let mut file = private_options()
            .create_new(true)
            .open(&temp)
            .with_context(|| format!("creating {}", temp.display()))?;
        file.write_all(text.expose_secret().as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temp, path).with_context(|| format!("replacing {}", path.display()))?;
        anyhow::Ok(())
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written?;
    // The rename itself reaches the disk with the directory.
    if let Ok(dir) = File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// Re-reads the ring files of a running server and puts a changed ring in place, for the
/// flows and the outbox worker at once (they share [`LiveRing`]s). A file that does not
/// parse is logged and the ring in use kept. Configured rings are not watched.
pub struct Reloader {
    watched: Vec<Watched>,
}

struct Watched {
    ring: Ring,
    path: PathBuf,
    live: LiveRing,
    /// The text last read, to act only on a change (and log a bad file once).
    seen: Option<SecretString>,
    unreadable: bool,
}

impl Reloader {
    pub fn new(settings: &Settings, deps: &Deps) -> Self {
        let watched = Ring::ALL
            .into_iter()
            .filter_map(|ring| match source(settings, ring) {
                Source::Configured(_) => None,
                Source::File(path) => Some(Watched {
                    ring,
                    path,
                    live: ring.live(deps).clone(),
                    seen: None,
                    unreadable: false,
                }),
            })
            .collect();
        Self { watched }
    }

    pub fn is_empty(&self) -> bool {
        self.watched.is_empty()
    }

    /// Reads each file once and replaces each ring whose file changed.
    pub fn check(&mut self) {
        for watched in &mut self.watched {
            watched.check();
        }
    }

    /// Checks every `every` (never when zero) and on each SIGHUP, until dropped.
    pub async fn run(mut self, every: Duration) {
        let mut tick = (!every.is_zero()).then(|| {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick
        });
        #[cfg(unix)]
        let mut hangup =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        loop {
            let ticked = async {
                match &mut tick {
                    Some(tick) => {
                        tick.tick().await;
                    }
                    None => std::future::pending().await,
                }
            };
            #[cfg(unix)]
            let hung_up = async {
                let received = match &mut hangup {
                    Some(signal) => signal.recv().await.is_some(),
                    None => false,
                };
                if !received {
                    std::future::pending::<()>().await;
                }
            };
            #[cfg(not(unix))]
            let hung_up = std::future::pending::<()>();
            tokio::select! {
                () = ticked => {}
                () = hung_up => tracing::info!("SIGHUP: re-reading the key ring files"),
            }
            self.check();
        }
    }
}

impl Watched {
    fn check(&mut self) {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(err) => {
                if !self.unreadable {
                    tracing::error!(
                        ring = self.ring.name(),
                        path = %self.path.display(),
                        error = %err,
                        "cannot read the key ring file; keeping the ring in use"
                    );
                }
                self.unreadable = true;
                return;
            }
        };
        self.unreadable = false;
        if self
            .seen
            .as_ref()
            .is_some_and(|seen| seen.expose_secret() == text)
        {
            return;
        }
        let parsed = KeyFile::parse(&text);
        self.seen = Some(text.into());
        match parsed {
            Ok(file) => {
                let before: Vec<String> = self.live.snapshot().ids().map(str::to_owned).collect();
                let after: Vec<&str> = file.ring().ids().collect();
                self.live.replace(file.ring().clone());
                if before != after {
                    tracing::info!(
                        ring = self.ring.name(),
                        current = file.ring().current().0,
                        ids = ?after,
                        "key ring reloaded"
                    );
                }
            }
            Err(err) => tracing::error!(
                ring = self.ring.name(),
                path = %self.path.display(),
                error = %err,
                "the key ring file is invalid; keeping the ring in use"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use rekey_core::ports::{OsRandom, SystemClock};

    use super::*;

    fn settings(dir: &Path) -> Settings {
        let mut settings = Settings {
            data_dir: dir.to_owned(),
            ..Settings::default()
        };
        settings.argon2.memory_kib = 64;
        settings.argon2.iterations = 1;
        settings
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn generated_then_rotated_files_stay_private_and_keep_old_keys() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(&dir.path().join("data"));
        let first = load_or_generate(&s, Ring::CodeHmac, &OsRandom, &SystemClock).unwrap();
        assert_eq!(first.current().0, "k1");
        let path = s.data_dir.join("code_hmac.keys");
        // Loaded again, not generated again.
        let again = load_or_generate(&s, Ring::CodeHmac, &OsRandom, &SystemClock).unwrap();
        assert_eq!(again.get("k1"), first.get("k1"));

        assert_eq!(rotate_file(&path, &OsRandom, &SystemClock).unwrap(), "k2");
        assert_eq!(rotate_file(&path, &OsRandom, &SystemClock).unwrap(), "k3");
        let file = read(&path).unwrap().unwrap();
        let ids: Vec<&str> = file.ring().ids().collect();
        assert_eq!(ids, ["k3", "k2", "k1"]);
        assert_eq!(file.ring().get("k1"), first.get("k1"));
        assert!(file.keys().iter().all(|k| k.created.is_some()));
        #[cfg(unix)]
        assert_eq!(mode(&path), 0o600);
        let leftovers: Vec<String> = std::fs::read_dir(&s.data_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn a_file_of_an_older_version_keeps_working_and_rotates() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path());
        let old = KeyRing::generate_spec("k1", &OsRandom);
        let path = dir.path().join("outbox.keys");
        std::fs::write(&path, &old).unwrap();
        let ring = load_or_generate(&s, Ring::Outbox, &OsRandom, &SystemClock).unwrap();
        assert_eq!(ring.expose_spec().expose_secret(), old);
        assert_eq!(rotate_file(&path, &OsRandom, &SystemClock).unwrap(), "k2");
        let file = read(&path).unwrap().unwrap();
        assert_eq!(file.keys()[1].created, None, "age of k1 unknown");
        assert_eq!(file.ring().get("k1"), ring.get("k1"));
    }

    #[test]
    fn rotating_a_missing_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err =
            rotate_file(&dir.path().join("code_hmac.keys"), &OsRandom, &SystemClock).unwrap_err();
        assert!(format!("{err:#}").contains("no key ring"), "{err:#}");
        assert!(!dir.path().join("code_hmac.keys").exists());
    }

    #[tokio::test]
    async fn the_reloader_picks_up_a_rotation_and_keeps_the_ring_on_a_bad_file() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path());
        let deps = crate::app::deps(&s).await.unwrap();
        let worker_copy = deps.sealer.clone();
        let mut reloader = Reloader::new(&s, &deps);
        reloader.check();
        assert_eq!(deps.codes.ring().snapshot().current().0, "k1");

        let codes_path = dir.path().join("code_hmac.keys");
        let outbox_path = dir.path().join("outbox.keys");
        rotate_file(&codes_path, &OsRandom, &SystemClock).unwrap();
        rotate_file(&outbox_path, &OsRandom, &SystemClock).unwrap();
        reloader.check();
        assert_eq!(deps.codes.ring().snapshot().current().0, "k2");
        assert_eq!(worker_copy.ring().snapshot().current().0, "k2");

        std::fs::write(&codes_path, "k9:not base64\n").unwrap();
        reloader.check();
        reloader.check();
        let kept: Vec<String> = deps
            .codes
            .ring()
            .snapshot()
            .ids()
            .map(str::to_owned)
            .collect();
        assert_eq!(kept, ["k2", "k1"], "a bad file leaves the ring as it was");

        std::fs::remove_file(&codes_path).unwrap();
        reloader.check();
        assert_eq!(deps.codes.ring().snapshot().current().0, "k2");
    }

    #[tokio::test]
    async fn configured_rings_are_not_watched() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = settings(dir.path());
        s.keys.code_hmac = Some(KeyRing::generate_spec("c1", &OsRandom).into());
        s.keys.outbox = Some(KeyRing::generate_spec("o1", &OsRandom).into());
        let deps = crate::app::deps(&s).await.unwrap();
        assert!(Reloader::new(&s, &deps).is_empty());
        assert!(!dir.path().join("code_hmac.keys").exists());
    }
}
