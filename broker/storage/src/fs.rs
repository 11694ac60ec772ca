//! The file-system seam: every write and fsync of data the log depends on (segment
//! appends and preallocation, index entries, checkpoints, fsync and fdatasync of those
//! files, directory fsyncs) goes through the functions here, so that a test can make
//! them fail with a chosen errno, as tikv/raft-engine's `FileSystem` trait allows.
//!
//! Faults are armed process-wide but scoped by path: [`inject`] fails the operations
//! on files under one directory (each test uses its own temporary directory, so tests
//! running in parallel in one process do not see each other's faults), from the `n`-th
//! such operation on, until the returned [`FaultGuard`] is dropped.
//! [`inject_while_file_exists`] is the broker's hidden `--debug-fail-fsync-after-file`:
//! operations under a directory fail while a trigger file exists.
//!
//! This is the one piece of process-wide mutable state in the crate, on purpose: it is
//! a test hook, inert unless armed, and the broker arms it only from its hidden debug
//! flag. When nothing is armed an operation costs one atomic load (and a
//! predicted branch) more than the plain `std` call it wraps, a system call.
//!
//! | operation                      | [`FaultOp`] | a fault makes it                              |
//! |--------------------------------|-------------|-----------------------------------------------|
//! | positional write, `write_all`  | `Write`     | write `torn_bytes` of the buffer, then fail   |
//! | `set_len` (cut or extend)      | `Write`     | fail, the file unchanged                      |
//! | `fsync`, `fdatasync`           | `Sync`      | fail, as after a lost write-back (EIO)        |
//! | directory fsync                | `Sync`      | fail                                          |

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

/// Linux's `EIO`: an I/O error (a failed write-back surfaces as this from fsync).
pub const EIO: i32 = 5;
/// Linux's `ENOSPC`: no space left on the device.
pub const ENOSPC: i32 = 28;

/// The kind of file operation a fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultOp {
    /// Writes of file contents and length changes.
    Write,
    /// `fsync`/`fdatasync` of files and directories.
    Sync,
}

/// A fault to inject with [`inject`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    /// Which operations fail.
    pub op: FaultOp,
    /// The errno they fail with ([`EIO`], [`ENOSPC`], ...).
    pub errno: i32,
    /// Matching operations that still succeed before the first failure (0: the next
    /// one fails). Every matching operation after that fails too.
    pub after: u64,
    /// For a failing write: how many bytes of its buffer reach the file first (a torn
    /// write, as a device filling up mid-write leaves). 0 writes nothing.
    pub torn_bytes: usize,
}

impl Fault {
    /// Fails every fsync under the scope from the next one on, with `errno`.
    pub fn syncs(errno: i32) -> Fault {
        Fault {
            op: FaultOp::Sync,
            errno,
            after: 0,
            torn_bytes: 0,
        }
    }

    /// Fails every write under the scope from the next one on, with `errno`.
    pub fn writes(errno: i32) -> Fault {
        Fault {
            op: FaultOp::Write,
            errno,
            after: 0,
            torn_bytes: 0,
        }
    }

    /// The same fault, letting `n` matching operations succeed first.
    pub fn after(self, n: u64) -> Fault {
        Fault { after: n, ..self }
    }

    /// The same fault, writing `bytes` of a failing write's buffer first.
    pub fn torn(self, bytes: usize) -> Fault {
        Fault {
            torn_bytes: bytes,
            ..self
        }
    }
}

/// Disarms its fault when dropped.
#[derive(Debug)]
#[must_use = "the fault is disarmed when the guard is dropped"]
pub struct FaultGuard {
    id: u64,
}

impl Drop for FaultGuard {
    fn drop(&mut self) {
        let mut rules = rules();
        let before = rules.len();
        rules.retain(|r| r.id != self.id);
        ARMED.fetch_sub(before - rules.len(), Ordering::Release);
    }
}

/// Makes `fault.op` operations on paths under `scope` fail from the `fault.after`-th
/// one on, until the guard is dropped.
pub fn inject(scope: &Path, fault: Fault) -> FaultGuard {
    arm(Rule {
        id: 0,
        scope: scope.to_path_buf(),
        except: Vec::new(),
        trigger: Trigger::Count { fault, seen: 0 },
    })
}

/// Makes operations on paths under `scope` (but not under any of `except`) fail while
/// the file `trigger` exists, until the guard is dropped. The trigger file's words say
/// what fails: `fsync` and/or `write` (default `fsync`), and `EIO` or `ENOSPC`
/// (default `EIO`): `write ENOSPC` fails writes with ENOSPC and leaves fsyncs alone.
/// Every operation under `scope` reads the trigger file while this is armed: a test
/// hook, not for production.
pub fn inject_while_file_exists(scope: &Path, except: &[PathBuf], trigger: &Path) -> FaultGuard {
    arm(Rule {
        id: 0,
        scope: scope.to_path_buf(),
        except: except.to_vec(),
        trigger: Trigger::File(trigger.to_path_buf()),
    })
}

/// `file.write_all_at(buf, position)`, through the seam.
pub(crate) fn write_all_at(file: &File, buf: &[u8], position: u64, path: &Path) -> io::Result<()> {
    if let Some(injected) = injected(FaultOp::Write, path) {
        let torn = injected.torn_bytes.min(buf.len());
        file.write_all_at(&buf[..torn], position)?;
        return Err(injected.error());
    }
    file.write_all_at(buf, position)
}

/// `file.write_all(buf)`, through the seam.
pub(crate) fn write_all(file: &mut File, buf: &[u8], path: &Path) -> io::Result<()> {
    if let Some(injected) = injected(FaultOp::Write, path) {
        let torn = injected.torn_bytes.min(buf.len());
        file.write_all(&buf[..torn])?;
        return Err(injected.error());
    }
    file.write_all(buf)
}

/// `file.set_len(len)`, through the seam.
pub(crate) fn set_len(file: &File, len: u64, path: &Path) -> io::Result<()> {
    if let Some(injected) = injected(FaultOp::Write, path) {
        return Err(injected.error());
    }
    file.set_len(len)
}

/// `file.sync_all()` (fsync), through the seam.
pub(crate) fn sync_all(file: &File, path: &Path) -> io::Result<()> {
    if let Some(injected) = injected(FaultOp::Sync, path) {
        return Err(injected.error());
    }
    file.sync_all()
}

/// `file.sync_data()` (fdatasync), through the seam.
pub(crate) fn sync_data(file: &File, path: &Path) -> io::Result<()> {
    if let Some(injected) = injected(FaultOp::Sync, path) {
        return Err(injected.error());
    }
    file.sync_data()
}

/// Opens the directory and fsyncs it, through the seam.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    if let Some(injected) = injected(FaultOp::Sync, dir) {
        return Err(injected.error());
    }
    File::open(dir)?.sync_all()
}

/// Rules armed; checked before anything else so that an unarmed seam costs one load.
static ARMED: AtomicUsize = AtomicUsize::new(0);
static RULES: Mutex<Vec<Rule>> = Mutex::new(Vec::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

#[derive(Debug)]
struct Rule {
    id: u64,
    scope: PathBuf,
    except: Vec<PathBuf>,
    trigger: Trigger,
}

#[derive(Debug)]
enum Trigger {
    /// Fails from the `fault.after`-th matching operation on; `seen` counts them.
    Count { fault: Fault, seen: u64 },
    /// Fails while this file exists, as its contents say.
    File(PathBuf),
}

/// What a failing operation does.
#[derive(Debug, Clone, Copy)]
struct Injected {
    errno: i32,
    torn_bytes: usize,
}

impl Injected {
    fn error(self) -> io::Error {
        io::Error::from_raw_os_error(self.errno)
    }
}

fn rules() -> MutexGuard<'static, Vec<Rule>> {
    RULES.lock().unwrap_or_else(|e| e.into_inner())
}

fn arm(mut rule: Rule) -> FaultGuard {
    rule.id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let id = rule.id;
    rules().push(rule);
    ARMED.fetch_add(1, Ordering::Release);
    FaultGuard { id }
}

/// The fault for an `op` on `path`, if one is armed and due.
#[inline]
fn injected(op: FaultOp, path: &Path) -> Option<Injected> {
    if ARMED.load(Ordering::Acquire) == 0 {
        return None;
    }
    injected_slow(op, path)
}

#[cold]
fn injected_slow(op: FaultOp, path: &Path) -> Option<Injected> {
    let mut rules = rules();
    for rule in rules.iter_mut() {
        if !path.starts_with(&rule.scope) || rule.except.iter().any(|e| path.starts_with(e)) {
            continue;
        }
        let due = match &mut rule.trigger {
            Trigger::Count { fault, seen } if fault.op == op => {
                *seen += 1;
                (*seen > fault.after).then_some(Injected {
                    errno: fault.errno,
                    torn_bytes: fault.torn_bytes,
                })
            }
            Trigger::Count { .. } => None,
            Trigger::File(trigger) => file_fault(trigger, op),
        };
        if due.is_some() {
            return due;
        }
    }
    None
}

/// The trigger file's fault for `op`, if the file exists (see [`inject_while_file_exists`]).
fn file_fault(trigger: &Path, op: FaultOp) -> Option<Injected> {
    let mut words = String::new();
    let file = File::open(trigger).ok()?;
    // A few words at most: anything longer is cut, never allocated.
    io::Read::read_to_string(&mut io::Read::take(file, 256), &mut words).ok()?;
    let words: Vec<String> = words.split_whitespace().map(str::to_lowercase).collect();
    let has = |w: &str| words.iter().any(|x| x == w);
    let writes = has("write");
    let syncs = has("fsync") || !writes;
    let applies = match op {
        FaultOp::Write => writes,
        FaultOp::Sync => syncs,
    };
    let errno = if has("enospc") { ENOSPC } else { EIO };
    applies.then_some(Injected {
        errno,
        torn_bytes: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_are_scoped_counted_and_disarmed() {
        let dir = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = File::create(&path).unwrap();
        let guard = inject(dir.path(), Fault::syncs(EIO).after(1));
        sync_all(&file, &path).unwrap(); // the one let through
        let e = sync_data(&file, &path).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(EIO));
        assert!(sync_dir(dir.path()).is_err());
        // Writes and other directories are not concerned.
        write_all_at(&file, b"abc", 0, &path).unwrap();
        sync_dir(other.path()).unwrap();
        drop(guard);
        sync_all(&file, &path).unwrap();
    }

    #[test]
    fn a_torn_write_leaves_a_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = File::create(&path).unwrap();
        let guard = inject(dir.path(), Fault::writes(ENOSPC).torn(2));
        let e = write_all_at(&file, b"abcdef", 0, &path).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(ENOSPC));
        assert!(set_len(&file, 0, &path).is_err());
        drop(guard);
        assert_eq!(std::fs::read(&path).unwrap(), b"ab");
    }

    #[test]
    fn a_trigger_file_fails_what_it_names_while_it_exists() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let spared = data.join("spared");
        std::fs::create_dir_all(&spared).unwrap();
        let trigger = dir.path().join("fail");
        let path = data.join("f");
        let file = File::create(&path).unwrap();
        let _guard = inject_while_file_exists(&data, std::slice::from_ref(&spared), &trigger);
        sync_all(&file, &path).unwrap();
        std::fs::write(&trigger, "").unwrap();
        assert_eq!(
            sync_all(&file, &path).unwrap_err().raw_os_error(),
            Some(EIO)
        );
        write_all_at(&file, b"x", 0, &path).unwrap();
        sync_dir(&spared).unwrap();
        std::fs::write(&trigger, "write ENOSPC\n").unwrap();
        sync_all(&file, &path).unwrap();
        let e = write_all_at(&file, b"x", 0, &path).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(ENOSPC));
        std::fs::remove_file(&trigger).unwrap();
        write_all_at(&file, b"x", 0, &path).unwrap();
    }
}
