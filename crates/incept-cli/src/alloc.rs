//! The process's allocator: the system's, with blocks of 2 MB and more on
//! transparent huge pages.
//!
//! A run streams the model's 95 MB of packed weights; on 4 KB pages that is
//! some 23,000 TLB misses a run. Blocks of 2 MB or more (the checkpoint's
//! bytes, the classifier's and the 8x8 blocks' packed weights, the stem's
//! activations) are aligned to 2 MB and offered to the kernel as huge-page
//! candidates with `madvise(MADV_HUGEPAGE)`, which is only advice: where
//! transparent huge pages are off, nothing changes. About 30 MB of a full
//! model's blocks land on huge pages, and `incept bench` gains about 1%
//! (0.2-0.5 ms of 49 at batch 1 on 1 thread, 2.8 ms of 393 at batch 8,
//! alternating runs of the two binaries; at 2 threads, within noise), with
//! the same peak memory.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};

/// [`System`], with large blocks on huge pages.
pub struct HugePages;

/// A huge page, and the smallest block placed on them. (Blocks from 1 MB
/// up, rounded up to whole huge pages, put 82 MB on them instead of 30,
/// for 15 MB more resident memory and no clear gain.)
const HUGE: usize = 2 << 20;

// SAFETY: every block comes from `System` or from `posix_memalign`, both of
// which `System.dealloc` (glibc's `free`) releases; alignment and size are
// at least the layout's.
unsafe impl GlobalAlloc for HugePages {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() < HUGE {
            // SAFETY: the caller's contract, passed on.
            return unsafe { System.alloc(layout) };
        }
        let mut p: *mut libc::c_void = std::ptr::null_mut();
        let align = layout.align().max(HUGE);
        // SAFETY: `align` is a power of two and a multiple of the pointer
        // size; `p` is a valid out-pointer.
        if unsafe { libc::posix_memalign(&mut p, align, layout.size()) } != 0 {
            return std::ptr::null_mut();
        }
        // SAFETY: `p` starts a block of `layout.size()` bytes, and only the
        // whole huge pages inside it are advised. Advice that fails (THP
        // off or unsupported) changes nothing.
        unsafe {
            libc::madvise(p, layout.size() & !(HUGE - 1), libc::MADV_HUGEPAGE);
        }
        p.cast()
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() < HUGE {
            // SAFETY: the caller's contract, passed on.
            return unsafe { System.alloc_zeroed(layout) };
        }
        // SAFETY: the caller's contract; the block holds `layout.size()`
        // bytes when not null.
        unsafe {
            let p = self.alloc(layout);
            if !p.is_null() {
                std::ptr::write_bytes(p, 0, layout.size());
            }
            p
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if layout.size() < HUGE && new_size < HUGE {
            // SAFETY: the caller's contract, passed on: `ptr` came from
            // `System` (a small block).
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // SAFETY: `new_size` with the old alignment is a valid layout (the
        // caller's contract); the new block holds `new_size` bytes, the old
        // one `layout.size()`, and both are live until the copy is done.
        unsafe {
            let new = Layout::from_size_align_unchecked(new_size, layout.align());
            let p = self.alloc(new);
            if !p.is_null() {
                std::ptr::copy_nonoverlapping(ptr, p, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            p
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` above: `System` or `posix_memalign`,
        // both freed by `free`, which `System.dealloc` calls.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[cfg(test)]
mod tests {
    use super::HUGE;

    /// Blocks from 2 MB up are aligned to 2 MB; growing one across the
    /// threshold, or within it, keeps its contents; small blocks are the
    /// system's (this binary's tests run on this allocator too).
    #[test]
    fn large_blocks_are_aligned_and_keep_their_contents() {
        let mut v: Vec<u8> = (0..3 * HUGE).map(|i| (i % 251) as u8).collect();
        assert_eq!(v.as_ptr() as usize % HUGE, 0);
        v.reserve_exact(4 * HUGE);
        assert_eq!(v.as_ptr() as usize % HUGE, 0);
        assert!(v.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
        let mut small: Vec<u8> = (0..1000).map(|i| (i % 7) as u8).collect();
        small.reserve_exact(3 * HUGE);
        assert_eq!(small.as_ptr() as usize % HUGE, 0);
        assert!(small.iter().enumerate().all(|(i, &b)| b == (i % 7) as u8));
        let zeros = vec![0u32; HUGE];
        assert!(zeros.iter().all(|&z| z == 0));
    }
}
