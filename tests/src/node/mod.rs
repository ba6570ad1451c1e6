//! A test node: runs the images we build the way a SaladCloud node would, with real parts only
//! (the local `docker-registry`, overlayfs, `runc`), on stand-in base images that start the way
//! upstream's do, and the real containerd and Docker Engine beside it to hold the test node to. Used by
//! `tests/tests/runtime.rs` (`make test-runtime`).

pub mod containerd;
pub mod docker;
pub mod oci;
pub mod probes;
pub mod runtime;
pub mod standin;
pub mod tree;

/// What went wrong on the test node.
#[derive(Debug, Clone)]
pub struct NodeError(pub String);

impl std::fmt::Display for NodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NodeError {}

/// Result of the test node's steps.
pub type Result<T> = std::result::Result<T, NodeError>;
