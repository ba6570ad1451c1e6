/// What the builder is doing with a layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Looking up the base image, the per-model index or the source.
    Resolving,
    /// Streaming bytes from the source (or the base registry) into the target registry.
    Uploading,
    /// The layer already exists in the target repository; nothing is transferred.
    Reused,
    /// The layer is complete in the target repository.
    Done,
}

/// One progress report for one layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Layer name (the model name from the recipe, or `base:<digest>` for base layers).
    pub layer: String,
    /// Current phase.
    pub phase: Phase,
    /// Bytes of the source read so far.
    pub bytes_done: u64,
    /// Total size of the source when known.
    pub bytes_total: Option<u64>,
}

/// Receives progress reports. Called from the builder's tasks: keep it cheap and non-blocking.
pub trait ProgressSink: Send + Sync {
    /// Called on every phase change and about every 32 MiB while uploading.
    fn on_progress(&self, progress: &Progress);
}
