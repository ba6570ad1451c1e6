//! A root filesystem as a runtime presents it to a container: every path with its type, mode,
//! owner, and content (sha256 of a file, target of a link, device number), to compare two
//! runtimes' unpacking of one image. Times are left out: neither server reads them.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use sha2::{Digest, Sha256};

use super::{NodeError, Result};

/// One path of a tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// `dir`, `file`, `symlink`, `char`, `block`, `fifo` or `socket`.
    pub kind: &'static str,
    /// Permission bits with setuid, setgid and sticky.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// A file's size and sha256, a link's target, a device's number; empty otherwise.
    pub content: String,
}

/// Every path of a root filesystem, with what it is.
pub type Tree = BTreeMap<String, Entry>;

/// Every path under `root` (as `/path`; the root itself as `/`).
pub fn tree(root: &Path) -> Result<Tree> {
    let mut out = BTreeMap::new();
    walk(root, root, &mut out)?;
    Ok(out)
}

fn walk(root: &Path, path: &Path, out: &mut BTreeMap<String, Entry>) -> Result<()> {
    let io = |e: std::io::Error| NodeError(format!("{}: {e}", path.display()));
    let meta = std::fs::symlink_metadata(path).map_err(io)?;
    let t = meta.file_type();
    let (kind, content) = if t.is_dir() {
        ("dir", String::new())
    } else if t.is_file() {
        let mut file = std::fs::File::open(path).map_err(io)?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut buf).map_err(io)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        let sha = hex::encode(hasher.finalize());
        ("file", format!("{} bytes, sha256 {sha}", meta.len()))
    } else if t.is_symlink() {
        let target = std::fs::read_link(path).map_err(io)?;
        ("symlink", target.display().to_string())
    } else if t.is_char_device() {
        ("char", meta.rdev().to_string())
    } else if t.is_block_device() {
        ("block", meta.rdev().to_string())
    } else if t.is_fifo() {
        ("fifo", String::new())
    } else {
        ("socket", String::new())
    };
    let rel = path.strip_prefix(root).unwrap_or(path);
    out.insert(
        format!("/{}", rel.display()),
        Entry {
            kind,
            mode: meta.mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
            content,
        },
    );
    if t.is_dir() {
        let mut children: Vec<_> = std::fs::read_dir(path)
            .map_err(io)?
            .map(|e| e.map(|e| e.path()))
            .collect::<std::io::Result<_>>()
            .map_err(io)?;
        children.sort();
        for child in children {
            walk(root, &child, out)?;
        }
    }
    Ok(())
}

/// How `theirs` differs from `ours`, one line per path (at most `limit` lines).
pub fn differences(ours: &Tree, theirs: &Tree, limit: usize) -> Vec<String> {
    let mut out = Vec::new();
    for (path, a) in ours {
        match theirs.get(path) {
            None => out.push(format!("{path}: only in ours ({a:?})")),
            Some(b) if a != b => out.push(format!("{path}: ours {a:?}, theirs {b:?}")),
            Some(_) => {}
        }
    }
    for (path, b) in theirs {
        if !ours.contains_key(path) {
            out.push(format!("{path}: only in theirs ({b:?})"));
        }
    }
    out.truncate(limit);
    out
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn sample(root: &Path) {
        std::fs::create_dir_all(root.join("models")).unwrap();
        std::fs::write(root.join("models/m.safetensors"), b"weights").unwrap();
        std::os::unix::fs::symlink("models/m.safetensors", root.join("link")).unwrap();
    }

    #[test]
    fn equal_trees_agree_and_each_attribute_is_a_difference() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        sample(a.path());
        sample(b.path());
        let ours = tree(a.path()).unwrap();
        assert_eq!(ours.len(), 4, "{ours:?}");
        assert_eq!(ours["/link"].content, "models/m.safetensors");
        assert!(differences(&ours, &tree(b.path()).unwrap(), 10).is_empty());

        std::fs::write(b.path().join("models/m.safetensors"), b"Weights").unwrap();
        std::fs::set_permissions(b.path().join("models"), PermissionsExt::from_mode(0o700))
            .unwrap();
        std::fs::write(b.path().join("extra"), b"").unwrap();
        std::fs::remove_file(b.path().join("link")).unwrap();
        let found = differences(&ours, &tree(b.path()).unwrap(), 10);
        let about = |p: &str| found.iter().any(|l| l.starts_with(&format!("{p}:")));
        assert_eq!(found.len(), 4, "{found:?}");
        assert!(
            about("/models/m.safetensors") && about("/models"),
            "{found:?}"
        );
        assert!(about("/extra") && about("/link"), "{found:?}");
        assert_eq!(differences(&ours, &tree(b.path()).unwrap(), 1).len(), 1);
    }
}
