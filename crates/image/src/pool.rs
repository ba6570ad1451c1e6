//! Byte buffers that go back to a free list when the pipeline drops their last slice, so a
//! streaming build reuses a few buffers instead of allocating one per chunk or range (under musl,
//! the operator image's libc, every fresh buffer of this size is an mmap, its page faults and a
//! munmap). The download's ranges and the archive rewriter's chunks both travel this way.

use std::sync::Mutex;

use bytes::Bytes;

/// Empty buffers with their allocations, ready to be filled again.
#[derive(Default)]
pub(crate) struct Spares(Mutex<Vec<Vec<u8>>>);

impl Spares {
    /// A spare, or a new empty buffer when there is none.
    pub(crate) fn take(&self) -> Vec<u8> {
        self.lock().pop().unwrap_or_default()
    }

    /// Keeps `bytes` (emptied) for the next [`Spares::take`] while fewer than `at_most` wait.
    pub(crate) fn keep(&self, mut bytes: Vec<u8>, at_most: usize) {
        let mut free = self.lock();
        if free.len() < at_most {
            bytes.clear();
            free.push(bytes);
        }
    }

    /// Frees every spare.
    pub(crate) fn clear(&self) {
        self.lock().clear();
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Vec<u8>>> {
        self.0.lock().expect("spare buffers lock")
    }
}

/// Where a buffer goes when the last slice of it is dropped.
pub(crate) trait Home: Send + 'static {
    fn welcome(&self, bytes: Vec<u8>);
}

/// A buffer on its way through the pipeline; [`Pooled::into_bytes`] hands it on without a copy.
pub(crate) struct Pooled<H: Home> {
    pub(crate) bytes: Vec<u8>,
    home: H,
}

impl<H: Home> Pooled<H> {
    pub(crate) fn new(bytes: Vec<u8>, home: H) -> Self {
        Self { bytes, home }
    }

    /// The buffer as `Bytes`; slices of it share it, and the last one dropped sends it home.
    pub(crate) fn into_bytes(self) -> Bytes {
        Bytes::from_owner(self)
    }
}

impl<H: Home> AsRef<[u8]> for Pooled<H> {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl<H: Home> Drop for Pooled<H> {
    fn drop(&mut self) {
        self.home.welcome(std::mem::take(&mut self.bytes));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    struct Shelf(Arc<Spares>, usize);

    impl Home for Shelf {
        fn welcome(&self, bytes: Vec<u8>) {
            self.0.keep(bytes, self.1);
        }
    }

    #[test]
    fn a_buffer_comes_home_empty_with_its_allocation_when_the_last_slice_is_dropped() {
        let spares = Arc::new(Spares::default());
        let mut buf = spares.take();
        buf.extend_from_slice(&[7; 1000]);
        let whole = Pooled::new(buf, Shelf(spares.clone(), 1)).into_bytes();
        let (head, tail) = (whole.slice(..10), whole.slice(10..));
        drop(whole);
        drop(head);
        assert_eq!(spares.len(), 0, "a slice still holds the buffer");
        assert_eq!(&tail[..3], &[7, 7, 7]);
        drop(tail);
        assert_eq!(spares.len(), 1);
        let again = spares.take();
        assert!(again.is_empty() && again.capacity() >= 1000);
    }

    #[test]
    fn spares_beyond_the_limit_are_freed() {
        let spares = Arc::new(Spares::default());
        for _ in 0..3 {
            drop(Pooled::new(vec![1; 8], Shelf(spares.clone(), 2)));
        }
        assert_eq!(spares.len(), 2);
        spares.clear();
        assert_eq!(spares.len(), 0);
    }
}
