//! `phbguard fix --in-place` as safe as an editor's save, on the real binary and real files:
//! what the file carries survives (owner, group, setgid, ACL, xattrs), a file with other hard
//! links or one saved by someone else meanwhile is left alone, CRLF stays CRLF, `kill -9` at
//! any moment leaves the old or the new file and nothing the next run does not remove.
//! docs/fix.md lists these guarantees.

use crate::support::{self, golden};

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

const BROKEN: &str = "examples/domains/hostdev-on-default-phb.xml";
const COMPLIANT: &str = "examples/domains/compliant-db01.xml";

fn spawn_fix_in_place(path: &Path) -> Child {
    support::Run::new(support::bin())
        .args([
            "fix",
            "--in-place",
            "--quiet",
            "--sysfs-root",
            &support::examples_sysfs(),
            path.to_str().unwrap(),
        ])
        .spawn()
}

/// `text` in a fresh directory as `guest.xml`.
fn scratch(text: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("guest.xml");
    fs::write(&path, text).unwrap();
    (dir, path)
}

fn example(name: &str) -> Vec<u8> {
    fs::read(support::repo().join(name)).unwrap()
}

/// What `--in-place` must write for `input`, the BROKEN example or a copy of it with lines
/// added away from what the fix changes: the example's `.fix` golden file's diff applied to it
/// (pinned, not what the binary under test says today).
fn fixed(input: &[u8]) -> Vec<u8> {
    golden::fixed(&support::repo().join(BROKEN), input)
}

fn sh(script: &str, args: &[&str]) -> Output {
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg("sh")
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{script}: {}", support::stderr(&out));
    out
}

fn getfattr_dump(path: &Path) -> String {
    // Every namespace (-m -), values hex-encoded, without the file name line.
    let out = sh(
        "getfattr --absolute-names -d -m - -e hex \"$1\"",
        &[path.to_str().unwrap()],
    );
    support::stdout(&out)
        .lines()
        .filter(|l| !l.starts_with("# file:"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_root() -> bool {
    fs::metadata("/proc/self").unwrap().uid() == 0
}

#[test]
fn owner_group_setgid_mode_acl_selinux_label_and_user_xattrs_are_kept() {
    assert!(
        is_root(),
        "needs root to give the file another owner (scripts/test-all runs as root)"
    );
    let (dir, path) = scratch(&example(BROKEN));
    let p = path.to_str().unwrap();
    // Owner before mode matters: a chown clears setgid, so the mode must come after it.
    std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o2640)).unwrap();
    sh("setfacl -m u:daemon:rw -m g:adm:r \"$1\"", &[p]);
    sh(
        "setfattr -n user.origin -v virsh-dumpxml \"$1\" && setfattr -n user.empty \"$1\"",
        &[p],
    );
    // A SELinux label is an xattr like any other to a kernel without SELinux; root may set it.
    sh(
        "setfattr -n security.selinux -v system_u:object_r:virt_etc_t:s0 \"$1\"",
        &[p],
    );
    let before = fs::metadata(&path).unwrap();
    let attrs_before = getfattr_dump(&path);
    assert!(attrs_before.contains("system.posix_acl_access"), "{attrs_before}");
    assert!(attrs_before.contains("security.selinux"), "{attrs_before}");
    assert!(attrs_before.contains("user.origin"), "{attrs_before}");

    let out = support::fix_examples(&["--in-place", p]);
    assert_eq!(out.status.code(), Some(0), "{}", support::stderr(&out));
    let after = fs::metadata(&path).unwrap();
    assert_ne!(after.ino(), before.ino(), "replaced, not rewritten in place");
    assert_eq!(fs::read(&path).unwrap(), fixed(&example(BROKEN)));
    assert_eq!((after.uid(), after.gid()), (65534, 65534));
    // (The ACL's mask shows as the group bits: setfacl made them rw.)
    assert_eq!(before.mode() & 0o7777, 0o2660);
    assert_eq!(after.mode() & 0o7777, 0o2660);
    assert_eq!(getfattr_dump(&path), attrs_before);
    let acl = support::stdout(&sh("getfacl --omit-header \"$1\"", &[p]));
    assert!(
        acl.contains("user:daemon:rw-") && acl.contains("group:adm:r--"),
        "{acl}"
    );
    assert_eq!(support::entries(dir.path()), ["guest.xml"]);
}

#[test]
fn a_file_with_another_hard_link_is_refused_and_no_change_is_listed() {
    let (dir, path) = scratch(&example(BROKEN));
    let other = dir.path().join("other-name.xml");
    fs::hard_link(&path, &other).unwrap();
    let out = support::fix_examples(&["--in-place", path.to_str().unwrap()]);
    let stderr = support::stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(
        stderr,
        format!(
            "phbguard: {}: not rewritten: it has 2 hard links, and replacing it would leave the \
             other names with the old contents; fix a copy, or print the result and write it \
             over the file yourself\n",
            path.display()
        )
    );
    assert_eq!(fs::read(&path).unwrap(), example(BROKEN));
    assert_eq!(
        fs::metadata(&other).unwrap().ino(),
        fs::metadata(&path).unwrap().ino()
    );
    assert_eq!(support::entries(dir.path()), ["guest.xml", "other-name.xml"]);
}

#[test]
fn inserted_lines_keep_the_files_crlf_line_endings() {
    let lf = String::from_utf8(example(BROKEN)).unwrap();
    let crlf = lf.replace('\n', "\r\n");
    let (_dir, path) = scratch(crlf.as_bytes());
    let out = support::fix_examples(&["--in-place", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", support::stderr(&out));
    let written = fs::read_to_string(&path).unwrap();
    // A new PHB controller (five lines) was inserted, and not one line ends in a bare LF.
    assert!(
        written.contains("<controller type='pci' index='1' model='pci-root'>\r\n"),
        "{written}"
    );
    assert_eq!(
        written.matches('\n').count(),
        written.matches("\r\n").count(),
        "{written:?}"
    );
    assert_eq!(
        written,
        String::from_utf8(fixed(lf.as_bytes()))
            .unwrap()
            .replace('\n', "\r\n")
    );
}

#[test]
fn backup_keeps_the_original_beside_the_fixed_file() {
    let (dir, path) = scratch(&example(BROKEN));
    let p = path.to_str().unwrap();
    let out = support::fix_examples(&["--in-place", "--backup", p]);
    assert_eq!(out.status.code(), Some(0), "{}", support::stderr(&out));
    assert_eq!(
        fs::read(dir.path().join("guest.xml.orig")).unwrap(),
        example(BROKEN)
    );
    assert_eq!(fs::read(&path).unwrap(), fixed(&example(BROKEN)));

    fs::write(&path, example(BROKEN)).unwrap();
    let out = support::fix_examples(&["-i", "--backup=~", p]);
    assert_eq!(out.status.code(), Some(0), "{}", support::stderr(&out));
    assert_eq!(fs::read(dir.path().join("guest.xml~")).unwrap(), example(BROKEN));
    assert_eq!(
        support::entries(dir.path()),
        ["guest.xml", "guest.xml.orig", "guest.xml~"]
    );

    // Only with --in-place, and never a suffix that leaves the directory.
    assert_eq!(support::fix_examples(&["--backup", p]).status.code(), Some(2));
    let out = support::fix_examples(&["-i", "--backup=/x", p]);
    assert_eq!(out.status.code(), Some(2), "{}", support::stderr(&out));
}

#[test]
fn a_dead_writers_temporary_file_is_removed_by_the_next_run() {
    let (dir, path) = scratch(&example(COMPLIANT));
    // Named as a phbguard whose process is gone would have left it: pid above pid_max.
    let leftover = dir.path().join(".guest.xml.phbguard-4294967295-123.AbCdEf");
    fs::write(&leftover, "half a file").unwrap();
    let out = support::fix_examples(&["--in-place", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", support::stderr(&out));
    assert_eq!(support::entries(dir.path()), ["guest.xml"]);
}

/// A big domain (a long comment inside it), so that a fix takes long enough to be interrupted
/// while it works.
fn big_broken() -> Vec<u8> {
    let text = String::from_utf8(example(BROKEN)).unwrap();
    let comment = format!("<!-- {} -->\n  <memory", "padding ".repeat(512 * 1024));
    text.replacen("<memory", &comment, 1).into_bytes()
}

#[test]
fn kill_9_at_any_moment_leaves_the_old_or_the_new_file_and_the_next_run_cleans_up() {
    let old = big_broken();
    let new = fixed(&old);
    let (dir, path) = scratch(&old);
    let others = |dir: &Path| support::entries(dir).len() - 1;
    // After each kill: the old file or the new one, never anything else.
    let killed = |k: &str, child: &mut Child| {
        let _ = child.kill(); // SIGKILL (an error only when it has exited already)
        child.wait().unwrap();
        let now = fs::read(&path).unwrap();
        assert!(
            now == old || now == new,
            "{k}: the file is neither the old nor the new version"
        );
        now == old
    };

    // Kills aimed at the write: as soon as fix's temporary file shows in the directory. One
    // that lands there leaves the temporary file behind and the old file in place; the rename
    // may win the race now and then, so each attempt says where its kill landed, and enough of
    // them must land mid-write.
    let (mut mid_write, mut after) = (0, 0);
    for attempt in 0..200 {
        if mid_write == 5 {
            break;
        }
        fs::write(&path, &old).unwrap();
        for leftover in support::entries(dir.path()).iter().filter(|n| *n != "guest.xml") {
            fs::remove_file(dir.path().join(leftover)).unwrap();
        }
        let mut child = spawn_fix_in_place(&path);
        let deadline = Instant::now() + Duration::from_secs(120);
        while others(dir.path()) == 0 && child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "fix never created its temporary file");
            std::hint::spin_loop();
        }
        let old_left = killed(&format!("write kill {attempt}"), &mut child);
        if old_left && others(dir.path()) > 0 {
            mid_write += 1;
        } else {
            after += 1;
        }
    }
    assert_eq!(
        mid_write, 5,
        "only {mid_write} kills landed while the temporary file existed ({after} after the rename)"
    );
    // The next run removes what the last of them left, and does its work.
    assert!(others(dir.path()) > 0, "the killed run left no temporary file");
    let out = spawn_fix_in_place(&path).wait_with_output().unwrap();
    assert!(out.status.success(), "{}", support::stderr(&out));
    assert_eq!(support::entries(dir.path()), ["guest.xml"]);
    assert_eq!(fs::read(&path).unwrap(), new);

    // Kills spread over a whole run (before it reads, while it reads or judges, at the end).
    let started = Instant::now();
    let out = spawn_fix_in_place(&path).wait_with_output().unwrap();
    assert!(out.status.success(), "{}", support::stderr(&out));
    let run = started.elapsed();
    let (mut old_seen, mut new_seen) = (0, 0);
    let kills = 20u32;
    for k in 0..kills {
        fs::write(&path, &old).unwrap();
        let mut child = spawn_fix_in_place(&path);
        std::thread::sleep(run * k / kills);
        if killed(&format!("kill {k}"), &mut child) {
            old_seen += 1;
        } else {
            new_seen += 1;
        }
    }
    eprintln!(
        "{mid_write} kills mid-write ({after} too late); {kills} spread kills: {old_seen} left the \
         old file, {new_seen} the new"
    );
    // The next run, with nothing to do or not, removes whatever the killed ones left.
    fs::write(&path, &new).unwrap();
    let out = spawn_fix_in_place(&path).wait_with_output().unwrap();
    assert!(out.status.success(), "{}", support::stderr(&out));
    assert_eq!(support::entries(dir.path()), ["guest.xml"]);
    assert_eq!(fs::read(&path).unwrap(), new);
}

/// Bytes the process has read so far (`/proc/PID/io` rchar).
fn bytes_read(pid: u32) -> Option<u64> {
    let io = fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    io.lines().find_map(|l| l.strip_prefix("rchar: "))?.parse().ok()
}

#[test]
fn a_save_by_another_program_while_fix_works_is_never_lost() {
    let old = big_broken();
    // What another program saves: the same guest with one more comment, fixable just the same.
    let theirs = String::from_utf8(old.clone())
        .unwrap()
        .replacen("<devices>", "<devices>\n    <!-- edited -->", 1)
        .into_bytes();
    let theirs_fixed = fixed(&theirs);
    let (dir, path) = scratch(&old);
    let mut refused = 0;
    for round in 0..8 {
        fs::write(&path, &old).unwrap();
        let child = spawn_fix_in_place(&path);
        let pid = child.id();
        // Once fix has read the file, stop it, save over the file as an editor would (a new
        // file renamed over it, or the same file rewritten), and let it go on.
        let deadline = Instant::now() + Duration::from_secs(30);
        while bytes_read(pid).is_some_and(|n| n < old.len() as u64) && Instant::now() < deadline {
            std::hint::spin_loop();
        }
        sh("kill -STOP \"$1\"", &[&pid.to_string()]);
        if round % 2 == 0 {
            let staging = dir.path().join("editor-save");
            fs::write(&staging, &theirs).unwrap();
            fs::rename(&staging, &path).unwrap();
        } else {
            fs::write(&path, &theirs).unwrap();
        }
        sh("kill -CONT \"$1\"", &[&pid.to_string()]);
        let out = child.wait_with_output().unwrap();
        let now = fs::read(&path).unwrap();
        // Their save is in the file, as they wrote it or fixed (had fix read it after all);
        // never the fix of what was there before.
        assert!(
            now == theirs || now == theirs_fixed,
            "round {round}: the other program's save was lost"
        );
        let stderr = support::stderr(&out);
        if now == theirs && out.status.code() != Some(0) {
            // Refused before the rename; or, when the in-place save tore the last bytes of
            // fix's read, refused as bad input before anything was written.
            assert_eq!(out.status.code(), Some(2), "{stderr}");
            assert_eq!(stderr.lines().count(), 1, "{stderr}");
            refused += usize::from(stderr.contains("not rewritten: changed while fixing"));
        }
        assert_eq!(support::entries(dir.path()), ["guest.xml"], "round {round}");
    }
    assert!(refused > 0, "fix never saw the other save: the test did not race");
}
